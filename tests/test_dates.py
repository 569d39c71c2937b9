from datetime import date

from smearmil.data.dates import age_at, parse_dob


def test_both_real_formats_and_iso() -> None:
    assert parse_dob("11/3/1933").value == date(1933, 11, 3)
    assert parse_dob("19-09-1984").value == date(1984, 9, 19)
    assert parse_dob("1984-09-19").value == date(1984, 9, 19)


def test_impossible_in_convention_is_swapped_with_a_note() -> None:
    parsed = parse_dob("25/12/1950")  # slash means month first; month 25 is impossible
    assert parsed.value == date(1950, 12, 25)
    assert parsed.note is not None and "read as 1950-12-25" in parsed.note


def test_impossible_and_garbage_have_no_value() -> None:
    for text in ("31/31/1950", "2/30/1950", "yesterday", ""):
        parsed = parse_dob(text)
        assert parsed.value is None and parsed.note


def test_age() -> None:
    assert abs(age_at(date(1950, 1, 1), date(2020, 1, 1)) - 70.0) < 0.01
