"""What every page shares: the open workspace (from the URL), links between pages, access
control, error display, progress bars and cached thumbnails.

The open workspace lives in the URL query parameter ``ws`` (a reload or a second tab sees the
same one); everything else a page shows is read from the workspace's catalog on each run.
Pages stay thin views over ``serieslabeler``: no algorithm lives here.
"""
from __future__ import annotations

import contextlib
import hmac
import io
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import streamlit as st
from PIL import Image, ImageDraw, ImageOps
from streamlit.errors import StreamlitAPIException

from serieslabeler.demo import SAMPLE_METADATA, prepare_sample
from serieslabeler.errors import InputError, PipelineError
from serieslabeler.progress import Rate
from serieslabeler.store import CATALOG, Workspace

ROOT = Path(__file__).resolve().parent.parent

# Not "pages/": Streamlit treats a folder of that name beside app.py as the old multipage layout
# and would run those files directly, without app.py (no menu, no access control).
PAGES_DIR = Path(__file__).resolve().parent / "app_pages"
WS_PARAM = "ws"
PASSWORD_ENV = "LABELER_PASSWORD"
APP_TITLE = "Image series labeler"


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
    PageSpec("train.py", "Train & route", ":material/model_training:", "train", "Iteration"),
    PageSpec("metrics.py", "Metrics", ":material/monitoring:", "metrics", "Results"),
    PageSpec("series.py", "Series", ":material/view_carousel:", "series", "Results"),
    PageSpec("export.py", "Export", ":material/download:", "export", "Results"),
)


# --- which workspace is open -------------------------------------------------------------------
def default_workspace() -> Path:
    """The sample workspace the app opens on (``LABELER_WORKSPACE`` overrides where it lives)."""
    return Path(os.environ.get("LABELER_WORKSPACE", ROOT / "workspaces" / "sample")).resolve()


def workspace_path() -> Path:
    """The open workspace: the ``ws`` query parameter (survives reloads, shareable), else the default."""
    chosen = st.query_params.get(WS_PARAM)
    return Path(chosen).expanduser().resolve() if chosen else default_workspace()


def workspace_query() -> dict[str, str]:
    """The query parameters that keep the open workspace when following a link."""
    chosen = st.query_params.get(WS_PARAM)
    return {WS_PARAM: chosen} if chosen else {}


def known_workspaces() -> list[Path]:
    """Workspaces beside the default one (folders holding a catalog), for the picker."""
    parent = default_workspace().parent
    found = sorted(p.parent for p in parent.glob(f"*/{CATALOG}")) if parent.is_dir() else []
    current = workspace_path()
    return found if current in found else [current, *found]


@st.cache_resource(show_spinner="Preparing the sample workspace (first start only)...")
def _sample_ready(path: str) -> bool:
    prepare_sample(path).close()
    return True


def open_workspace() -> Workspace:
    """Open the chosen workspace (the bundled sample is prepared on first use); stop with a message if it cannot be."""
    path = workspace_path()
    try:
        if path == default_workspace():
            _sample_ready(str(path))
        return Workspace.open(path)
    except PipelineError as error:
        st.error(str(error))
        st.stop()


def select_workspace(path: str | Path, create: bool = False) -> None:
    """Make ``path`` the open workspace (creating it if asked) and rerun; errors are shown, not raised."""
    text = str(path).strip()
    if not text:
        st.error("Type a folder path first.")
        return
    target = Path(text).expanduser().resolve()
    try:
        (Workspace.create if create else Workspace.open)(target).close()
    except (PipelineError, OSError) as error:
        st.error(str(error))
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


# --- access control -----------------------------------------------------------------------------
def oidc_configured() -> bool:
    """True when ``.streamlit/secrets.toml`` has an ``[auth]`` section for ``st.login``."""
    try:
        return "auth" in st.secrets
    except (FileNotFoundError, StreamlitAPIException, KeyError):
        return False


def require_access() -> None:
    """Stop the page unless the visitor may see it: ``st.login`` when configured, else the
    ``LABELER_PASSWORD`` environment variable when set; open when neither is (local use)."""
    if oidc_configured():
        if not st.user.is_logged_in:
            st.title(APP_TITLE)
            st.button("Log in", type="primary", on_click=st.login)
            st.stop()
        st.sidebar.button("Log out", on_click=st.logout)
        return
    password = os.environ.get(PASSWORD_ENV)
    if not password or st.session_state.get("access_granted"):
        return
    st.title(APP_TITLE)
    with st.form("access"):
        typed = st.text_input("Password", type="password", help=f"Set by the server's {PASSWORD_ENV}.")
        submitted = st.form_submit_button("Enter", type="primary")
    if submitted and hmac.compare_digest(typed.encode(), password.encode()):
        st.session_state["access_granted"] = True
        st.rerun()
    if submitted:
        st.error("Wrong password.")
    st.stop()


def author() -> str:
    """Who is acting, for the label log: the logged-in user when ``st.login`` is on, else ``app``."""
    if oidc_configured() and st.user.is_logged_in:
        return str(st.user.get("email") or st.user.get("name") or "app")
    return "app"


# --- errors and progress ------------------------------------------------------------------------
def show_error(error: PipelineError) -> None:
    """A library error as a message in the page (an input report as a table of problems)."""
    if isinstance(error, InputError):
        st.error(f"{len(error.problems)} problem(s) in the input; nothing was written. {error.hint}")
        st.dataframe(
            [{"where": p.where, "problem": p.message} for p in error.problems],
            hide_index=True,
            width="stretch",
        )
    else:
        st.error(str(error))


@contextlib.contextmanager
def errors_shown() -> Iterator[None]:
    """Run a block; a ``PipelineError`` becomes a message in the page instead of a traceback."""
    try:
        yield
    except PipelineError as error:
        show_error(error)


def plain(text) -> str:
    """User text (a label, a file name) made safe for markdown: no formatting, links or HTML."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~$:])", r"\\\1", str(text))


class ProgressBar:
    """A ``serieslabeler.progress.Progress`` callback that drives ``st.progress`` with a rate and ETA."""

    def __init__(self, label: str, unit: str = "images"):
        self.label = label
        self.unit = unit
        self.bar = st.progress(0.0, text=label)
        self.rate = Rate()

    def __call__(self, done: int, total: int) -> None:
        share = min(done / total, 1.0) if total else 1.0
        self.bar.progress(share, text=f"{self.label}: {done}/{total} {self.unit} · {self.rate.describe(done, total)}")

    def done(self) -> None:
        self.bar.empty()


# --- uploads ------------------------------------------------------------------------------------
SAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def safe_file_name(name: str, fallback: str = "upload") -> str:
    """A file name reduced to letters, digits, ``._-`` with no folder part and no leading dot."""
    base = SAFE_CHARS.sub("_", Path(name.replace("\\", "/")).name).lstrip("._")
    return base[:120] or fallback


def stage_upload(upload) -> Path:
    """Write an uploaded file once to a private temporary folder under a sanitized name."""
    folder = Path(tempfile.gettempdir()) / "labeler-uploads" / safe_file_name(upload.file_id, "file")
    path = folder / safe_file_name(upload.name)
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".upload-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(upload.getbuffer())
        os.replace(tmp, path)
    return path


# --- thumbnails ---------------------------------------------------------------------------------
@st.cache_data(max_entries=50_000, show_spinner=False)
def thumbnail_bytes(path: str) -> bytes:
    """A stored thumbnail's bytes (content-addressed, so the path is a safe cache key)."""
    return Path(path).read_bytes()


@st.cache_data(max_entries=5_000, show_spinner=False)
def excluded_thumbnail(path: str) -> bytes:
    """The thumbnail greyed out with a red frame and cross: how an excluded image looks."""
    with Image.open(path) as image:
        grey = ImageOps.grayscale(image).convert("RGB")
    faded = Image.blend(grey, Image.new("RGB", grey.size, "white"), 0.45)
    draw = ImageDraw.Draw(faded)
    width, height = faded.size
    line = max(4, width // 40)
    draw.rectangle([0, 0, width - 1, height - 1], outline=(214, 39, 40), width=line * 2)
    draw.line([(0, 0), (width, height)], fill=(214, 39, 40), width=line)
    draw.line([(0, height), (width, 0)], fill=(214, 39, 40), width=line)
    out = io.BytesIO()
    faded.save(out, "JPEG", quality=85)
    return out.getvalue()


def thumbnails(workspace: Workspace, image_ids) -> list[bytes]:
    """Thumbnail bytes for image ids, in order (read once per process, then cached)."""
    return [thumbnail_bytes(str(p)) for p in workspace.thumbnail_paths(list(image_ids))]


@st.cache_data(max_entries=20_000, show_spinner=False)
def thumbnail_uri(path: str, size: int = 96) -> str:
    """A small thumbnail as a data URI, for chart tooltips."""
    import base64

    with Image.open(path) as image:
        image.thumbnail((size, size))
        out = io.BytesIO()
        image.convert("RGB").save(out, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")


# --- page frame ---------------------------------------------------------------------------------
def page_header(title: str, caption: str) -> None:
    st.title(title)
    st.caption(caption)


def run_page(render) -> None:
    """Open the workspace, draw a page with ``render(workspace)``, show library errors as messages."""
    workspace = open_workspace()
    try:
        with errors_shown():
            render(workspace)
    finally:
        workspace.close()


# --- shared controls ----------------------------------------------------------------------------
def feature_set_picker(workspace: Workspace, key: str, help: str = "Which image features to use.") -> str | None:
    """A select box of the workspace's feature sets, newest first; None (with a hint) when there are none."""
    from serieslabeler.store import FeatureStore

    names = FeatureStore(workspace).names(newest_first=True)
    if not names:
        st.info("No image features yet: embed the images on the **Embed & map** page first.")
        return None
    name = st.selectbox("Features", names, key=key, help=help)
    st.caption(f"{FeatureStore(workspace).info(name).count} images embedded with `{name}`.")
    return name


def sample_picker(workspace: Workspace, key: str) -> int | None:
    """A select box of saved samples (newest first) plus "every embedded image" (None)."""
    from serieslabeler.sampling import list_samples

    samples = {s["id"]: s for s in list_samples(workspace)}
    options = [*samples, None]
    return st.selectbox(
        "Images",
        options,
        key=key,
        format_func=lambda i: "every embedded image" if i is None else f"sample {i}: {samples[i]['strategy']}, {samples[i]['size']} images",
        help="A saved sample (Sample page), or every image that has features.",
    )


def features_and_sample(workspace: Workspace, key: str) -> tuple[str | None, int | None]:
    """The feature set and the images (a saved sample or all) side by side."""
    left, right = st.columns(2)
    with left:
        feature_set = feature_set_picker(workspace, f"{key}_features")
    with right:
        sample_id = sample_picker(workspace, f"{key}_sample")
    return feature_set, sample_id


def metadata_weights(workspace: Workspace, key: str) -> dict[str, float]:
    """A slider per metadata field: the share of the variance it carries (0 = off)."""
    from serieslabeler.space import metadata_fields

    fields = metadata_fields(workspace)
    st.caption(
        "Metadata appended to the image features: each slider is the share of the total variance that "
        "field carries (0 = off); the image features keep the rest. `days` counts from each subject's first photo."
    )
    columns = st.columns(min(4, len(fields)))
    weights = {}
    for i, (name, kind) in enumerate(fields.items()):
        weights[name] = columns[i % len(columns)].slider(
            f"{name} ({kind})", 0.0, 0.9, SAMPLE_METADATA.get(name, 0.0), 0.05, key=f"{key}_{name}"
        )
    return {name: weight for name, weight in weights.items() if weight > 0}


NEW_LABEL = "+ new label"


def label_picker(workspace: Workspace, key: str, default: str | None = None, width: int | str = "stretch") -> str | None:
    """The label to give: one of the vocabulary, or a new name typed in (None until one is typed)."""
    from serieslabeler.labels import vocabulary

    names = vocabulary(workspace)
    options = [*names, NEW_LABEL]
    index = names.index(default) if default in names else 0
    choice = st.selectbox("Label", options, index=index, key=key, help="From the vocabulary, or a new name.", width=width)
    if choice != NEW_LABEL:
        return choice
    typed = st.text_input("New label", key=f"{key}_new", max_chars=100, placeholder="e.g. Torso", width=width)
    return typed.strip() or None
