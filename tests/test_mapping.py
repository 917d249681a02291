"""Column mapping that refuses to guess: role guesses, one column per role, warnings (ingest.mapping)."""
from __future__ import annotations

import pytest
from conftest import BANANAS, SAMPLE

from serieslabeler.errors import InputError
from serieslabeler.ingest import (
    ColumnMapping,
    check_columns,
    guess_roles,
    mapping_warnings,
    missing_roles,
    read_csv,
    role_conflicts,
)


def write(tmp_path, text: str):
    path = tmp_path / "metadata.csv"
    path.write_text(text)
    return read_csv(path)


def test_roles_are_guessed_only_from_clear_names_and_marked_with_a_reason():
    guesses = guess_roles(read_csv(SAMPLE / "metadata.csv"))
    assert {role: g.column for role, g in guesses.items()} == {"subject": "fruit", "date": "date", "time": "time", "file": "file"}
    assert guesses["subject"].column == "fruit" and "named 'fruit'" in guesses["subject"].reason
    assert guesses["date"].column == "date"


def test_an_unrecognisable_subject_column_is_not_guessed_and_dates_are_found_by_their_values(tmp_path):
    table = write(tmp_path, "img,who,shot,note\na.jpg,k1,28/05/2020,x\nb.jpg,k2,29/05/2020,y\n")
    guesses = guess_roles(table)
    assert "subject" not in guesses
    assert guesses["date"].column == "shot" and "reads as a date" in guesses["date"].reason
    assert missing_roles({role: g.column for role, g in guesses.items()}) == ["choose the Subject column"]


def test_one_column_cannot_take_two_roles(tmp_path):
    assert role_conflicts({"subject": "file", "date": "date", "file": "file"}) == [
        "column 'file' is chosen as both Subject and File name: one column, one role"
    ]
    mapping = ColumnMapping(subject="file", date="date", file="file")
    with pytest.raises(InputError, match="both Subject and File name"):
        check_columns(read_csv(SAMPLE / "metadata.csv"), mapping)
    with pytest.raises(InputError, match="both Subject and an attribute"):
        check_columns(read_csv(SAMPLE / "metadata.csv"), ColumnMapping(subject="fruit", date="date", attributes=("fruit",)))


def test_as_many_subjects_as_images_is_a_warning():
    table = read_csv(SAMPLE / "metadata.csv")
    warnings = mapping_warnings(table, ColumnMapping(subject="file", date="date"))
    assert len(warnings) == 1 and "every photo would be its own subject" in warnings[0]
    assert mapping_warnings(table, ColumnMapping(subject="fruit", date="date", label="ripeness", attributes=("group", "day", "hour"))) == []


def test_a_stage_kept_as_an_attribute_is_a_warning_but_flags_and_groups_are_not():
    table = read_csv(BANANAS / "metadata.csv")
    warnings = mapping_warnings(table, ColumnMapping(subject="fruit", date="date", attributes=("group", "training", "ripeness", "day")))
    assert len(warnings) == 1
    assert "'ripeness' looks like a stage or class (4 values: O, R, U, V)" in warnings[0] and "Ground truth" in warnings[0]
