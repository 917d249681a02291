"""Metrics: clustering quality (``clustering``) and classification quality (``classification``)."""
