"""The Streamlit app: ``streamlit run dashboard/app.py``. Each page is a thin view over ``pipeline``."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

PAGES = Path(__file__).resolve().parent / "pages"

st.set_page_config(page_title="Image series labeling", layout="wide")
navigation = st.navigation([st.Page(PAGES / "home.py", title="Home", default=True)])
navigation.run()
