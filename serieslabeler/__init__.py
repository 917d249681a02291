"""Sort and label large image collections that have structure in time (``image-series-labeler``).

The library has no Streamlit import; ``dashboard/`` is a view over it and ``serieslabeler`` its command line.
"""

__version__ = "0.2.0"
