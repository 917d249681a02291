import datetime as dt

import numpy as np
import pytest

from serieslabeler.ingest.weather import (
    WeatherError,
    WeatherTable,
    accumulated_degree_days,
    add_for_images,
    gaps,
    read_weather_csv,
)

FIVE_DAYS = """date,mean
2020-06-01,12.0
2020-06-02,8.5
2020-06-03,15.0
2020-06-04,-2.0
2020-06-05,10.5
"""


def write(tmp_path, text, name="weather.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_text(text, encoding=encoding)
    return path


def days(*texts):
    return np.array(texts, dtype="datetime64[D]")


def test_add_from_hand_computed_five_day_table(tmp_path):
    table = read_weather_csv(write(tmp_path, FIVE_DAYS))
    # base 0, placed 06-01: contributions 12, 8.5, 15, 0 (-2 clipped), 10.5
    # ADD: 12 | 12+8.5=20.5 | 20.5+15=35.5 | 35.5+0=35.5 | 35.5+10.5=46
    add = accumulated_degree_days(
        table, "", "2020-06-01", days("2020-06-01", "2020-06-02", "2020-06-03", "2020-06-04", "2020-06-05")
    )
    np.testing.assert_allclose(add, [12.0, 20.5, 35.5, 35.5, 46.0])


def test_add_counts_the_placement_day_and_starts_there(tmp_path):
    table = read_weather_csv(write(tmp_path, FIVE_DAYS))
    # placed 06-02: 8.5 | 8.5+15=23.5 | 23.5+0=23.5 | 23.5+10.5=34
    add = accumulated_degree_days(table, "", dt.date(2020, 6, 2), days("2020-06-05", "2020-06-02", "2020-06-03"))
    np.testing.assert_allclose(add, [34.0, 8.5, 23.5])


def test_base_temperature_clips_cold_days(tmp_path):
    table = read_weather_csv(write(tmp_path, FIVE_DAYS))
    # base 10: 12-10=2, 8.5-10<0 -> 0, 15-10=5, -2-10<0 -> 0, 10.5-10=0.5
    # ADD: 2 | 2 | 7 | 7 | 7.5
    add = accumulated_degree_days(
        table, "", "2020-06-01",
        days("2020-06-01", "2020-06-02", "2020-06-03", "2020-06-04", "2020-06-05"), base=10.0,
    )
    np.testing.assert_allclose(add, [2.0, 2.0, 7.0, 7.0, 7.5])


def test_mean_from_min_and_max(tmp_path):
    text = "Date,TMin,TMax\n2020-06-01,4,16\n2020-06-02,6,15\n2020-06-03,-3,5\n"
    table = read_weather_csv(write(tmp_path, text))
    # means: (4+16)/2=10, (6+15)/2=10.5, (-3+5)/2=1 ; ADD: 10 | 20.5 | 21.5
    np.testing.assert_allclose(table.mean, [10.0, 10.5, 1.0])
    add = accumulated_degree_days(table, "", "2020-06-01", days("2020-06-01", "2020-06-02", "2020-06-03"))
    np.testing.assert_allclose(add, [10.0, 20.5, 21.5])


def test_mean_column_wins_over_min_max(tmp_path):
    text = "date,tmin,tmax,tmean\n2020-06-01,0,10,7\n"
    assert read_weather_csv(write(tmp_path, text)).mean.tolist() == [7.0]
    table = read_weather_csv(write(tmp_path, text), min_column="tmin", max_column="tmax")
    assert table.mean.tolist() == [5.0]


def test_keys_per_site(tmp_path):
    text = (
        "site,date,temp\n"
        "F,2020-06-01,10\nF,2020-06-02,20\n"
        "G,2020-06-01,1\nG,2020-06-02,2\n"
    )
    table = read_weather_csv(write(tmp_path, text), key_column="site")
    assert set(table.keys.tolist()) == {"F", "G"}
    two_days = days("2020-06-01", "2020-06-02")
    np.testing.assert_allclose(accumulated_degree_days(table, "F", "2020-06-01", two_days), [10.0, 30.0])
    np.testing.assert_allclose(accumulated_degree_days(table, "G", "2020-06-01", two_days), [1.0, 3.0])


def test_add_for_images_places_each_subject_on_its_first_photo(tmp_path):
    text = (
        "site,date,temp\n"
        "F,2020-06-01,10\nF,2020-06-02,20\nF,2020-06-03,30\n"
        "G,2020-06-01,1\nG,2020-06-02,2\nG,2020-06-03,3\n"
    )
    table = read_weather_csv(write(tmp_path, text), key_column="site")
    keys = ["F", "G", "F", "G", "F"]
    subjects = ["s1", "s2", "s1", "s2", "s3"]
    dates = days("2020-06-02", "2020-06-01", "2020-06-03", "2020-06-03", "2020-06-03")
    # s1 placed 06-02 on F: 20 | 20+30=50 ; s2 placed 06-01 on G: 1 | 1+2+3=6 ; s3 placed 06-03: 30
    np.testing.assert_allclose(add_for_images(table, keys, subjects, dates), [20.0, 1.0, 50.0, 6.0, 30.0])


def test_dd_mm_yyyy_accepted_when_a_day_above_12_proves_it(tmp_path):
    text = "date,mean\n12/06/2020,1\n13/06/2020,2\n"
    table = read_weather_csv(write(tmp_path, text))
    assert table.dates.tolist() == [dt.date(2020, 6, 12), dt.date(2020, 6, 13)]


def test_utf8_bom_is_accepted(tmp_path):
    table = read_weather_csv(write(tmp_path, FIVE_DAYS, encoding="utf-8-sig"))
    assert len(table.dates) == 5


def test_gaps_are_listed_per_key():
    table = WeatherTable(
        dates=days("2020-06-01", "2020-06-02", "2020-06-05", "2020-06-07", "2020-06-01", "2020-06-03"),
        keys=np.array(["F", "F", "F", "F", "G", "G"]),
        mean=np.ones(6),
    )
    assert gaps(table) == [
        ("F", dt.date(2020, 6, 3), dt.date(2020, 6, 4)),
        ("F", dt.date(2020, 6, 6), dt.date(2020, 6, 6)),
        ("G", dt.date(2020, 6, 2), dt.date(2020, 6, 2)),
    ]


def test_no_gaps():
    table = WeatherTable(dates=days("2020-06-02", "2020-06-01"), keys=np.array(["", ""]), mean=np.ones(2))
    assert gaps(table) == []


def test_gap_inside_a_subject_range_raises_naming_subject_key_and_day(tmp_path):
    text = "site,date,temp\nF,2020-06-01,10\nF,2020-06-02,20\nF,2020-06-04,30\n"
    table = read_weather_csv(write(tmp_path, text), key_column="site")
    with pytest.raises(WeatherError) as error:
        add_for_images(table, ["F", "F"], ["s7", "s7"], days("2020-06-01", "2020-06-04"))
    message = str(error.value)
    assert "subject 's7'" in message and "2020-06-03" in message and "key 'F'" in message
    # a subject whose photos stay before the gap is fine
    np.testing.assert_allclose(add_for_images(table, ["F"], ["s8"], days("2020-06-02")), [20.0])


def test_date_outside_the_table_raises(tmp_path):
    table = read_weather_csv(write(tmp_path, FIVE_DAYS))
    with pytest.raises(WeatherError, match="no temperature for 2020-06-06"):
        accumulated_degree_days(table, "", "2020-06-04", days("2020-06-06"))
    with pytest.raises(WeatherError, match="no temperature for 2020-05-31"):
        accumulated_degree_days(table, "", "2020-05-31", days("2020-06-02"))


def test_unknown_key_raises(tmp_path):
    table = read_weather_csv(write(tmp_path, FIVE_DAYS))
    with pytest.raises(WeatherError, match="key 'Z'"):
        accumulated_degree_days(table, "Z", "2020-06-01", days("2020-06-02"))


def test_photo_before_placement_raises(tmp_path):
    table = read_weather_csv(write(tmp_path, FIVE_DAYS))
    with pytest.raises(WeatherError, match="photo before placement"):
        accumulated_degree_days(table, "", "2020-06-03", days("2020-06-02"))


def test_subject_with_two_weather_keys_raises(tmp_path):
    table = read_weather_csv(write(tmp_path, FIVE_DAYS))
    with pytest.raises(WeatherError, match="subject 's1'.*different weather keys"):
        add_for_images(table, ["", "F"], ["s1", "s1"], days("2020-06-01", "2020-06-02"))


@pytest.mark.parametrize(
    ("text", "kwargs", "line", "field", "problem"),
    [
        ("day,mean\n2020-06-01,1\n", {}, 1, "date", "no such column"),
        ("date,mean\n2020-06-01,1\n", {"key_column": "site"}, 1, "site", "no such column"),
        ("date,rain\n2020-06-01,1\n", {}, 1, "min/max", "no temperature column"),
        ("date,tmin\n2020-06-01,1\n", {}, 1, "max", "no temperature column"),
        ("date,mean\n2020-06-01,1\n2020-13-01,2\n", {}, 3, "date", "not a valid date"),
        ("date,mean\n2020-06-01,1\nJune 2,2\n", {}, 3, "date", "ISO yyyy-mm-dd"),
        ("date,mean\n01/06/2020,1\n02/06/2020,2\n", {}, 2, "date", "ambiguous"),
        ("date,mean\n13/06/2020,1\n06/14/2020,2\n", {}, 3, "date", "looks like mm/dd/yyyy"),
        ("date,mean\n2020-06-01,1\n2020-06-02,warm\n", {}, 3, "mean", "not a number"),
        ("date,mean\n2020-06-01,1\n2020-06-02,\n", {}, 3, "mean", "empty value"),
        ("date,mean\n2020-06-01,1\n2020-06-02\n", {}, 3, "mean", "empty value"),
        ("date,mean\n2020-06-01,nan\n", {}, 2, "mean", "not a finite"),
        ("date,mean\n2020-06-01,1\n2020-06-02,2\n2020-06-01,3\n", {}, 4, "date", "first at line 2"),
        ("site,date,mean\nF,2020-06-01,1\nF,2020-06-01,3\n", {"key_column": "site"}, 3, "site", "key 'F'"),
        ("date,tmin,tmax\n2020-06-01,1,2\n2020-06-02,9,3\n", {}, 3, "tmin", "above max"),
        ("date,mean\n2020-06-01,68\n", {}, 2, "mean", "looks like Fahrenheit or Kelvin; give degrees Celsius"),
        ("date,tmin,tmax\n2020-06-01,280.1,290.3\n", {}, 2, "tmin", "give degrees Celsius"),
        ("date,mean\n2020-06-01,-61\n", {}, 2, "mean", "give degrees Celsius"),
        ("date,mean\n", {}, 2, None, "empty table"),
        ("", {}, 1, None, "empty file"),
    ],
)
def test_every_read_error_names_file_line_and_field(tmp_path, text, kwargs, line, field, problem):
    path = write(tmp_path, text, name="site_F.csv")
    with pytest.raises(WeatherError) as error:
        read_weather_csv(path, **kwargs)
    message = str(error.value)
    assert str(path) in message
    assert f"line {line}" in message
    if field is not None:
        assert f"field '{field}" in message
    assert problem in message


def test_weather_error_is_a_value_error():
    assert issubclass(WeatherError, ValueError)


def test_fahrenheit_looking_values_are_refused(tmp_path):
    text = "date,tmax,tmin\n2020-07-01,88,65\n"
    with pytest.raises(WeatherError, match="Fahrenheit"):
        read_weather_csv(write(tmp_path, text))


@pytest.mark.parametrize("columns, day", [("mean", "{m}"), ("tmin,tmax", "{lo},{hi}")])
def test_a_table_of_cool_fahrenheit_days_is_refused_though_each_value_is_plausible(tmp_path, columns, day):
    """45-59 °F: each reading could be Celsius, but weeks of daily means above 40 °C happen nowhere."""
    rows = [day.format(m=45 + i % 15, lo=40 + i % 5, hi=58 + i % 3) for i in range(40)]
    text = f"date,{columns}\n" + "".join(f"2020-{4 + i // 30:02d}-{1 + i % 30:02d},{r}\n" for i, r in enumerate(rows))
    with pytest.raises(WeatherError, match="median daily mean is .* looks like Fahrenheit") as error:
        read_weather_csv(write(tmp_path, text, name="spring.csv"))
    assert "spring.csv" in str(error.value)
    hot = "date,mean\n" + "".join(f"2020-07-{d:02d},{30 + d % 9}\n" for d in range(1, 29))
    assert len(read_weather_csv(write(tmp_path, hot, name="desert.csv")).dates) == 28, "a hot summer in Celsius passes"


def test_non_utf8_file_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("date,temp\n2020-06-01,1\nsite é\n".encode("latin-1"))
    with pytest.raises(WeatherError, match="latin1.csv.*not UTF-8"):
        read_weather_csv(path)


def test_directly_built_table_refuses_duplicates():
    with pytest.raises(WeatherError, match="more than one temperature"):
        WeatherTable(dates=days("2020-06-01", "2020-06-01"), keys=np.array(["F", "F"]), mean=np.ones(2))
