import csv
import io

import pytest

from serieslabeler.export_safety import neutralise_formula, safe_row


@pytest.mark.parametrize(
    "cell",
    ["=1+1", "=HYPERLINK(\"http://evil\",\"click\")", "+41 22 000", "-2+3", "@SUM(A1:A2)", "\tcmd", "\rcmd", "=", "-"],
)
def test_formula_starts_are_prefixed_with_a_quote(cell):
    assert neutralise_formula(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["cat", "", "1=1", " =1", "'=already", "a-b", "2024-01-01", "é=", "\n=1"])
def test_other_strings_are_unchanged(cell):
    assert neutralise_formula(cell) == cell


@pytest.mark.parametrize("value", [-3, -2.5, 0, None, True, b"=bytes"])
def test_non_strings_are_unchanged(value):
    assert neutralise_formula(value) is value


def test_safe_row_neutralises_every_string_cell_and_keeps_keys():
    row = {"file": "=cmd|' /C calc'!A0", "score": -0.5, "label": "cat", "=key": "@x", "note": None}
    assert safe_row(row) == {"file": "'=cmd|' /C calc'!A0", "score": -0.5, "label": "cat", "=key": "'@x", "note": None}
    assert row["file"] == "=cmd|' /C calc'!A0"  # the caller's row is not modified


def test_csv_output_of_a_safe_row_starts_cells_with_a_quote():
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["file", "score"])
    writer.writerow(safe_row({"file": "=1+1", "score": -1}))
    assert out.getvalue() == "'=1+1,-1\r\n"
