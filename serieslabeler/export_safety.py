"""Exported CSV cells that a spreadsheet cannot run as formulas (CSV / formula injection).

Per OWASP's CSV injection guidance, a text cell that starts with '=', '+', '-', '@', a tab or a
carriage return is prefixed with a single quote, so Excel, LibreOffice and Google Sheets show it
as text instead of evaluating it. Only strings are touched: a negative number stored as a number
is written as digits by the csv module and is not a formula, so it stays as it is.
Header cells (column names from user metadata) need the same treatment: pass them through
:func:`neutralise_formula` too.
"""
from __future__ import annotations

from typing import TypeVar

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

Cell = TypeVar("Cell")


def neutralise_formula(value: Cell) -> Cell:
    """``value`` with a leading quote if it is a string a spreadsheet would treat as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def safe_row(row: dict) -> dict:
    """``row`` (a csv.DictWriter row) with every cell neutralised; keys are left alone."""
    return {key: neutralise_formula(value) for key, value in row.items()}
