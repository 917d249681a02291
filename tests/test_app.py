"""The real Streamlit app, driven by streamlit.testing.v1.AppTest on the bundled sample."""
from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from conftest import ROOT


@pytest.fixture
def sample_env(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELER_WORKSPACE", str(tmp_path / "sample"))
    return tmp_path / "sample"


def test_home_page_shows_the_sample(sample_env):
    app = AppTest.from_file(str(ROOT / "dashboard" / "pages" / "home.py"), default_timeout=120)
    app.run()
    assert not app.exception
    assert [m.value for m in app.metric][:2] == ["80", "4"]
