"""What every page shares: which workspace is open. Pages stay thin views over ``pipeline``."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pipeline.demo import prepare_sample  # noqa: E402
from pipeline.errors import PipelineError  # noqa: E402
from pipeline.workspace import Workspace  # noqa: E402



def default_workspace() -> Path:
    """The sample workspace the app opens on (``LABELER_WORKSPACE`` overrides where it lives)."""
    return Path(os.environ.get("LABELER_WORKSPACE", ROOT / "workspaces" / "sample"))


def workspace_path() -> Path:
    """The open workspace: the ``ws`` query parameter (survives reloads, shareable), else the default."""
    return Path(st.query_params.get("ws", str(default_workspace())))


@st.cache_resource(show_spinner="Preparing the sample workspace...")
def _sample_ready(path: str) -> bool:
    prepare_sample(path).close()
    return True


def open_workspace() -> Workspace:
    """Open the chosen workspace (the bundled sample is prepared on first use)."""
    path = workspace_path()
    try:
        if path == default_workspace():
            _sample_ready(str(path))
        return Workspace.open(path)
    except PipelineError as error:
        st.error(str(error))
        st.stop()
