"""Safe on a shared lab server (issue 14): listening, one root, no code from data, authors,
stale tabs, and every bad input refused with one message, exit 2 and nothing written."""
from __future__ import annotations

import pytest
from conftest import ROOT, served_on
from streamlit.testing.v1 import AppTest

APP = ROOT / "dashboard" / "app.py"
PAGES_DIR = ROOT / "dashboard" / "app_pages"
TIMEOUT = 180


@pytest.fixture
def served(sample_workspace, monkeypatch):
    """The prepared sample as the app's default workspace, its folder the app's root; no password."""
    monkeypatch.setenv("LABELER_WORKSPACE", str(sample_workspace))
    monkeypatch.delenv("LABELER_ROOT", raising=False)
    monkeypatch.delenv("LABELER_PASSWORD", raising=False)
    monkeypatch.delenv("LABELER_IMPORT_ROOTS", raising=False)
    with served_on("127.0.0.1"):
        yield sample_workspace


def app_run(**params) -> AppTest:
    app = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    for key, value in params.items():
        app.query_params[key] = str(value)
    return app.run()


def page_run(name: str, **params) -> AppTest:
    app = AppTest.from_file(str(PAGES_DIR / f"{name}.py"), default_timeout=TIMEOUT)
    for key, value in params.items():
        app.query_params[key] = str(value)
    return app.run()


# --- 1. listen safely ---------------------------------------------------------------------------
@pytest.mark.parametrize("address", ["0.0.0.0", "192.168.1.20", "::", None])
def test_the_app_refuses_a_network_address_without_access_control(served, address):
    with served_on(address):
        app = app_run()
    assert not app.exception
    assert "Refusing to serve" in app.error[0].value and "LABELER_PASSWORD" in app.error[0].value
    assert not app.metric, "nothing of the workspace is shown"


@pytest.mark.parametrize("address", ["127.0.0.1", "localhost", "::1"])
def test_the_app_serves_loopback_without_a_password(served, address):
    with served_on(address):
        app = app_run()
    assert not app.exception and not app.error
    assert app.metric


def test_a_network_address_with_a_password_asks_for_it_and_a_name(served, monkeypatch):
    monkeypatch.setenv("LABELER_PASSWORD", "s3cret")
    with served_on("0.0.0.0"):
        app = app_run()
        assert not app.error and not app.metric
        assert [t.label for t in app.text_input] == ["Your name", "Password"]
        app.text_input[1].set_value("s3cret")
        app.button[0].click().run()
        assert "Type your name" in app.error[0].value and not app.metric
        app.text_input[0].set_value("Ada Lovelace")
        app.button[0].click().run()
    assert not app.error and app.metric
    assert app.session_state["author_name"] == "Ada Lovelace"
