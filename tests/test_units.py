from __future__ import annotations

import numpy as np
import pytest

from search.units import format_bytes, format_size, parse_duration, parse_size, plural, whole_number


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("6GiB", 6 * 1024**3),
        ("512MB", 512 * 10**6),
        ("1.5G", 1_500_000_000),
        ("100", 100),
        (" 2 kib ", 2048),
        (4096, 4096),
    ],
)
def test_parse_size(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "lots",
        "6 GiBs",
        "-1GB",
        "0",
        "",
        "1.2.3G",
        True,
        [1],
        None,
        float("inf"),
        "1" + "0" * 400 + "GB",
        10**400,
    ],
)
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


@pytest.mark.parametrize("text", ["0", "-1GiB", " -1 GiB", "-0", -1])
def test_a_size_not_above_zero_is_told_it_must_be_positive(text: str | int) -> None:
    # A negative size is a size with the wrong sign, as 0 is, not text that is no size at all.
    with pytest.raises(ValueError, match="must be positive"):
        parse_size(text)


def test_an_unknown_unit_is_quoted_as_written_with_every_unit_accepted() -> None:
    with pytest.raises(ValueError) as caught:
        parse_size("12XB")
    message = str(caught.value)
    assert "unknown size unit 'XB' in '12XB'" in message
    listed = message.partition("(use ")[2].rstrip(")").replace("/", ", ").split(", ")
    for unit in listed:  # each unit listed is accepted, and all of them are listed (TB, TiB too)
        assert parse_size(f"2{unit}") >= 2
    assert {"B", "K", "KB", "M", "MB", "G", "GB", "T", "TB", "KiB", "MiB", "GiB", "TiB"} == set(listed)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10m", 600.0),
        ("90s", 90.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("600", 600.0),
        (2.5, 2.5),
        ("500ms", 0.5),
        ("1m30s500ms", 90.5),
    ],
)
def test_parse_duration(text: str | float, expected: float) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "soon",
        "10 minutes",
        "0s",
        "-5m",
        "m",
        "1 2",
        "1.5.5",
        "10m5",
        [1],
        float("inf"),
        "1" + "0" * 400,
        10**400,
    ],
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_format_bytes() -> None:
    assert format_bytes(None) == "-"
    assert format_bytes(512) == "512 B"
    assert format_bytes(3 * 1024**2) == "3 MiB"
    assert format_bytes(int(1.5 * 1024**3)) == "1.50 GiB"


def test_whole_number_takes_ints_and_numpys_only() -> None:
    assert (whole_number(3), whole_number(np.int64(3)), whole_number(0)) == (3, 3, 0)
    assert [whole_number(v) for v in (True, 2.5, 3.0, "3", None)] == [None] * 5


def test_a_size_written_in_decimal_units_is_shown_in_them_too() -> None:
    assert format_size(parse_size("16GB")) == "14.90 GiB (16 GB)"
    assert format_size(parse_size("1GB")) == "954 MiB (1 GB)"
    assert format_size(parse_size("16GiB")) == "16.00 GiB"  # binary: as written already
    assert format_size(parse_size("1.3GiB")) == "1.30 GiB"


def test_plural_adds_an_s_unless_there_is_exactly_one() -> None:
    assert [plural(n, "training") for n in (0, 1, 2)] == ["0 trainings", "1 training", "2 trainings"]
