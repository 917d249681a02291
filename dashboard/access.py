"""Access control: OIDC login (``st.login``) or a password from ``LABELER_PASSWORD``; who is acting."""
from __future__ import annotations

import hmac
import os

import streamlit as st
from streamlit.errors import StreamlitAPIException

PASSWORD_ENV = "LABELER_PASSWORD"
APP_TITLE = "Image series labeler"


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
