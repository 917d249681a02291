"""Which workspace is open (the ``ws`` query parameter), the pages and the links between them, the page frame."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import streamlit as st
from serieslabeler_app.widgets import errors_shown
from streamlit.errors import StreamlitAPIException

from serieslabeler.demo import is_sample_workspace, prepare_sample
from serieslabeler.errors import PipelineError, for_people
from serieslabeler.store import CATALOG, Workspace
from serieslabeler.store.paths import OutsideRoot, confine, confine_any

ROOT = Path(__file__).resolve().parent.parent

# Not "pages/": Streamlit treats a folder of that name beside app.py as the old multipage layout
# and would run those files directly, without app.py (no menu, no access control).
PAGES_DIR = Path(__file__).resolve().parent / "app_pages"
WS_PARAM = "ws"
IMPORT_ROOTS_ENV = "LABELER_IMPORT_ROOTS"


@dataclass(frozen=True)
class PageSpec:
    """One page of the app: its file under ``app_pages/``, title, icon, URL path and menu section."""

    file: str
    title: str
    icon: str
    url: str
    section: str


PAGES = (
    PageSpec("home.py", "Home", ":material/home:", "home", "Workspace"),
    PageSpec("collection.py", "Collection", ":material/photo_library:", "collection", "Workspace"),
    PageSpec("sample.py", "Sample", ":material/shuffle:", "sample", "Iteration"),
    PageSpec("map.py", "Embed & map", ":material/scatter_plot:", "map", "Iteration"),
    PageSpec("cluster.py", "Cluster", ":material/bubble_chart:", "cluster", "Iteration"),
    PageSpec("label.py", "Label", ":material/label:", "label", "Iteration"),
    PageSpec("centres.py", "VAE centres", ":material/hub:", "centres", "Iteration"),
    PageSpec("series.py", "Series", ":material/view_carousel:", "series", "Iteration"),
    PageSpec("train.py", "Train & route", ":material/model_training:", "train", "Iteration"),
    PageSpec("metrics.py", "Metrics", ":material/monitoring:", "metrics", "Results"),
    PageSpec("export.py", "Export", ":material/download:", "export", "Results"),
)


# --- which workspace is open -------------------------------------------------------------------
def workspace_root() -> Path:
    """The one folder the app serves workspaces from (``LABELER_ROOT``; default: the folder that
    holds the bundled sample workspace). New collections are made here."""
    configured = os.environ.get("LABELER_ROOT")
    return Path(configured).resolve() if configured else default_workspace().parent


def default_workspace() -> Path:
    """The sample workspace the app opens on (``LABELER_WORKSPACE`` overrides where it lives)."""
    return Path(os.environ.get("LABELER_WORKSPACE", ROOT / "workspaces" / "sample")).resolve()


def import_roots() -> list[Path]:
    """The server folders images and CSVs may be ingested from (``LABELER_IMPORT_ROOTS``, separated
    by ``os.pathsep``); none by default: then only uploads are offered."""
    configured = os.environ.get(IMPORT_ROOTS_ENV, "")
    return [Path(part).resolve() for part in configured.split(os.pathsep) if part.strip()]


def inside_root(typed: str | Path, what: str) -> Path:
    """A path typed in the app (absolute, or relative to the root), if it resolves inside the root."""
    return confine(workspace_root(), Path(str(typed).strip()), what)


def inside_import_roots(typed: str | Path, what: str) -> Path:
    """A server path to ingest from, if it resolves inside one of the import roots."""
    return confine_any(import_roots(), Path(str(typed).strip()), what)


def workspace_path() -> Path:
    """The open workspace: the ``ws`` query parameter (survives reloads, shareable), else the default.

    A ``ws`` outside the root stops the page with a message: a link must not open, nor read the
    model files of, a folder someone dropped elsewhere on the server.
    """
    chosen = st.query_params.get(WS_PARAM)
    if not chosen:
        return default_workspace()
    try:
        return inside_root(chosen, "workspace")
    except OutsideRoot as error:
        st.error(f"{error}: the app serves only workspaces under its root folder.")
        st.stop()


def workspace_query() -> dict[str, str]:
    """The query parameters that keep the open workspace when following a link."""
    chosen = st.query_params.get(WS_PARAM)
    return {WS_PARAM: chosen} if chosen else {}


def known_workspaces() -> list[Path]:
    """Workspaces under the root (folders holding a catalog), for the picker."""
    parent = workspace_root()
    found = sorted(p.parent for p in parent.glob(f"*/{CATALOG}")) if parent.is_dir() else []
    current = workspace_path()
    return found if current in found else [current, *found]


@st.cache_resource(show_spinner="Preparing the sample workspace (first start only)...")
def _sample_ready(path: str) -> bool:
    """Prepare the sample at ``path`` once per server; False (nothing done) when ``path`` holds
    a collection of its own (``LABELER_WORKSPACE`` pointed at it)."""
    if not is_sample_workspace(path):
        return False
    prepare_sample(path).close()
    return True


def is_bundled_sample(path: Path) -> bool:
    """Whether ``path`` is the app's sample workspace (prepared on first use)."""
    return path == default_workspace() and _sample_ready(str(path))


def open_workspace() -> Workspace:
    """Open the chosen workspace (the bundled sample is prepared on first use); stop with a message if it cannot be."""
    path = workspace_path()
    try:
        if path == default_workspace():
            _sample_ready(str(path))
        return Workspace.open(path, background_checkpoints=True)
    except PipelineError as error:
        st.error(for_people(str(error)))
        st.stop()


def select_workspace(path: str | Path, create: bool = False) -> None:
    """Make ``path`` the open workspace (creating it if asked) and rerun; errors are shown, not raised."""
    text = str(path).strip()
    if not text:
        st.error("Type a folder path first.")
        return
    try:
        target = inside_root(text, "workspace")
        (Workspace.create if create else Workspace.open)(target).close()
    except (PipelineError, OSError) as error:
        st.error(for_people(str(error)))
        return
    if create:
        st.switch_page(PAGES_DIR / "collection.py", query_params={WS_PARAM: str(target)})
    st.query_params[WS_PARAM] = str(target)
    st.rerun()


# --- links between pages ------------------------------------------------------------------------
def page_link(file: str, label: str, icon: str | None = None, **params) -> None:
    """A link to another page that keeps the open workspace (and adds ``params`` to the URL).

    A page run on its own (``AppTest.from_file(page)``, no navigation) shows the label as text.
    """
    query = {**workspace_query(), **{k: str(v) for k, v in params.items() if v is not None}}
    try:
        st.page_link(PAGES_DIR / file, label=label, icon=icon, query_params=query)
    except StreamlitAPIException:
        st.caption(label)


def int_param(name: str) -> int | None:
    """An integer query parameter, or None when absent or not a number."""
    value = st.query_params.get(name)
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


# --- page frame ---------------------------------------------------------------------------------
def page_header(title: str, caption: str) -> None:
    st.title(title)
    st.caption(caption)


def workspace_action(action, *args, **kwargs) -> None:
    """Run ``action(workspace, *args, **kwargs)`` on the open workspace, a ``PipelineError``
    shown as a message (nothing was changed): the frame of every page (:func:`run_page`) and a
    button's ``on_click``.

    Streamlit runs callbacks before the script, so a click acting there costs one render of the
    page instead of a render up to the button, the action and a rerun; its ``args`` are what the
    page showed when it drew the button."""
    workspace = open_workspace()
    try:
        with errors_shown():
            action(workspace, *args, **kwargs)
    finally:
        workspace.close()


def run_page(render) -> None:
    """Open the workspace, draw a page with ``render(workspace)``, show library errors as messages."""
    workspace_action(render)
