"""Access control: OIDC login (``st.login``) or a password from ``LABELER_PASSWORD``; who is acting.

The app refuses to serve a non-loopback address without one of them: the photos are of
donors' bodies, and an open app on a lab network hands every visitor the collection.
"""
from __future__ import annotations

import hmac
import ipaddress
import os

import streamlit as st
from streamlit.errors import StreamlitAPIException

PASSWORD_ENV = "LABELER_PASSWORD"
APP_TITLE = "Image series labeler"
AUTHOR_KEY = "author_name"
LOCAL_AUTHOR = "local"
MAX_AUTHOR = 80


# --- where the server listens ----------------------------------------------------------------
def served_address() -> str:
    """The address Streamlit listens on (``server.address``); empty means every interface."""
    return str(st.get_option("server.address") or "").strip()


def is_loopback(address: str) -> bool:
    """True for ``localhost`` and loopback IPs; an empty address (every interface) is not."""
    if address.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def refuse_open_network() -> None:
    """Stop every page when the app listens beyond this machine with no access control."""
    address = served_address()
    if is_loopback(address) or oidc_configured() or os.environ.get(PASSWORD_ENV):
        return
    where = f"address {address}" if address else "every network interface"
    st.title(APP_TITLE)
    st.error(
        f"Refusing to serve on {where} without access control. Set {PASSWORD_ENV} (or configure "
        "OIDC login in .streamlit/secrets.toml), or listen on this machine only with "
        "--server.address 127.0.0.1 (what 'make run' does)."
    )
    st.stop()


# --- access control -----------------------------------------------------------------------------
def oidc_configured() -> bool:
    """True when ``.streamlit/secrets.toml`` has an ``[auth]`` section for ``st.login``."""
    try:
        return "auth" in st.secrets
    except (FileNotFoundError, StreamlitAPIException, KeyError):
        return False


def require_access() -> None:
    """Stop the page unless the visitor may see it: ``st.login`` when configured, else the
    ``LABELER_PASSWORD`` environment variable when set (with the visitor's name, recorded as
    the author of their labels); open when neither is and the app listens on loopback only."""
    refuse_open_network()
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
        name = st.text_input("Your name", max_chars=MAX_AUTHOR, help="Recorded as the author of your labels; undo acts on your own.")
        typed = st.text_input("Password", type="password", help=f"Set by the server's {PASSWORD_ENV}.")
        submitted = st.form_submit_button("Enter", type="primary")
    if submitted and not name.strip():
        st.error("Type your name: each label records who made it.")
    elif submitted and hmac.compare_digest(typed.encode(), password.encode()):
        st.session_state["access_granted"] = True
        st.session_state[AUTHOR_KEY] = " ".join(name.split())[:MAX_AUTHOR]
        st.rerun()
    elif submitted:
        st.error("Wrong password.")
    st.stop()


def author() -> str:
    """Who is acting, for the label log: the OIDC identity, the name given at the password
    login, else ``local`` (the open app on this machine only)."""
    if oidc_configured() and st.user.is_logged_in:
        return str(st.user.get("email") or st.user.get("name") or st.user.get("sub") or LOCAL_AUTHOR)
    return st.session_state.get(AUTHOR_KEY) or LOCAL_AUTHOR
