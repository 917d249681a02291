"""The Streamlit app: ``streamlit run dashboard/app.py``. Each page is a thin view over ``serieslabeler``.

The menu is drawn here (not by ``st.navigation``) so that every link carries the open
workspace's ``ws`` query parameter: a reload, a bookmark or a second tab opens the same one.
"""
from __future__ import annotations

import streamlit as st
from serieslabeler_app import common as ui

st.set_page_config(page_title=ui.APP_TITLE, page_icon=":material/label:", layout="wide")
st.set_option("client.showErrorDetails", "type")
ui.require_access()

pages = {spec.file: st.Page(ui.PAGES_DIR / spec.file, title=spec.title, icon=spec.icon, url_path=spec.url, default=spec.file == "home.py") for spec in ui.PAGES}
navigation = st.navigation(list(pages.values()), position="hidden")

with st.sidebar:
    st.markdown(f"### {ui.APP_TITLE}")
    for section in dict.fromkeys(spec.section for spec in ui.PAGES):
        st.caption(section)
        for spec in (s for s in ui.PAGES if s.section == section):
            st.page_link(pages[spec.file], query_params=ui.workspace_query())
    st.divider()
    current = ui.workspace_path()
    st.caption("Open workspace")
    st.markdown(f"**{ui.plain(current.name)}**" + ("  (bundled sample)" if ui.is_bundled_sample(current) else ""))
    with st.expander("Open or create a workspace"):
        known = [str(p) for p in ui.known_workspaces()]
        chosen = st.selectbox("Existing workspaces", known, index=known.index(str(current)), help="Workspaces under the app's root folder.")
        if st.button("Open", key="open_known", disabled=chosen == str(current)):
            ui.select_workspace(chosen)
        typed = st.text_input("Folder under the root", placeholder="my-collection", help=f"A workspace folder to open, or a new one to create, under {ui.workspace_root()} (the app serves no other).")
        left, right = st.columns(2)
        if left.button("Open", key="open_typed"):
            ui.select_workspace(typed)
        if right.button("Create", key="create_typed"):
            ui.select_workspace(typed, create=True)
        st.caption("The choice is kept in the page address (`?ws=...`), so a reload or a second tab opens the same workspace.")

navigation.run()
