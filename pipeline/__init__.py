"""Metadata-aware clustering and labeling of image series (the library; no Streamlit here)."""

__version__ = "0.1.0"
