"""Home: what the open workspace holds."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import streamlit as st  # noqa: E402
from common import open_workspace  # noqa: E402

from pipeline.summary import summarize  # noqa: E402

workspace = open_workspace()
info = summarize(workspace)
st.title("Image series labeling")
st.caption(f"Workspace: `{info['workspace']}`")
left, middle, right = st.columns(3)
left.metric("Images", info["images"])
middle.metric("Subjects", info["subjects"])
right.metric("Labeled", sum(info["labels_by_source"].values()))
st.subheader("Subjects")
st.dataframe(info["subjects_detail"], hide_index=True)
