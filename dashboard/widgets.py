"""Controls every page shares (feature set, sample, metadata weights, label pickers), errors and progress bars."""
from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterator

import streamlit as st

from serieslabeler.demo import SAMPLE_METADATA
from serieslabeler.errors import InputError, PipelineError, for_people
from serieslabeler.labels import latest_event_id
from serieslabeler.progress import Rate
from serieslabeler.store import Workspace


# --- errors and progress ------------------------------------------------------------------------
def show_error(error: PipelineError) -> None:
    """A library error as a message in the page (an input report as a table of problems)."""
    if isinstance(error, InputError):
        st.error(f"{len(error.problems)} problem(s) in the input; nothing was written. {for_people(error.hint)}")
        st.dataframe(
            [{"where": p.where, "problem": for_people(p.message)} for p in error.problems],
            hide_index=True,
            width="stretch",
        )
    else:
        st.error(for_people(str(error)))


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


def vega_field(column: str) -> str:
    """``column`` as a Vega-Lite field name: given whole (no ``name:type`` shorthand, where the
    colon of ``attribute: group`` would be read as a type), with the characters Vega-Lite reads
    as nested access (``.``, ``[``, ``]``) escaped, since attribute names come from the user's CSV."""
    return "".join("\\" + c if c in "\\.[]" else c for c in column)


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
            f"{plain(name)} ({kind})", 0.0, 0.9, SAMPLE_METADATA.get(name, 0.0), 0.05, key=f"{key}_{name}"
        )
    return {name: weight for name, weight in weights.items() if weight > 0}


NEW_LABEL = "+ new label"


def label_picker(workspace: Workspace, key: str, suggestion=None, width: int | str = "stretch") -> str | None:
    """The label to give: nothing until the person picks one of the vocabulary or types a new name.

    ``suggestion`` (a ``serieslabeler.loop.Suggestion``) is shown beside the picker with its
    confidence and can be taken with one click; it is never chosen for the person."""
    from serieslabeler.labels import vocabulary

    names = vocabulary(workspace)
    options = [*names, NEW_LABEL]
    choice = st.selectbox("Label", options, index=None, key=key, placeholder="Choose a label", help="From the vocabulary, or a new name.", width=width)
    if suggestion is not None:
        st.caption(f"Suggested: {plain(suggestion.describe())}")
        if suggestion.label in names and choice != suggestion.label:
            st.button(f"Use {plain(suggestion.label)}", key=f"{key}_use", type="tertiary", on_click=_choose, args=(key, suggestion.label), help="Put the suggestion in the picker (it labels nothing by itself).")
    if choice is None or choice != NEW_LABEL:
        return choice
    typed = st.text_input("New label", key=f"{key}_new", max_chars=100, placeholder="e.g. Torso", width=width)
    return typed.strip() or None


def _choose(key: str, label: str) -> None:
    st.session_state[key] = label


def seen_event(workspace: Workspace, image_ids, clustering_id: int | None = None, cluster: int | None = None) -> int:
    """The log's latest event when this tab last showed these images (or the cluster): what a
    click on them refers to. The one shown now is remembered for the next click, so an action on
    images someone changed meanwhile is refused (``expected_event_id``)."""
    ids = sorted(int(i) for i in image_ids)
    digest = hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()[:16]
    key = f"seen_{workspace.root}_{clustering_id}_{cluster}_{digest}"
    latest = latest_event_id(workspace)
    seen = st.session_state.get(key, latest)
    st.session_state[key] = latest
    return seen
