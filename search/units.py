"""Parsing and formatting of memory sizes and durations given by users."""

from __future__ import annotations

import math
import operator
import re
from typing import Any

__all__ = [
    "format_bytes",
    "format_seconds",
    "format_size",
    "parse_duration",
    "parse_size",
    "plural",
    "whole_number",
]

# The units a size may be written in, as the error that lists them spells them (any case is
# accepted); a decimal unit's first letter alone is that unit too (``1.5G``), and no unit is bytes.
_UNIT_NAMES = {
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "TiB": 1024**4,
}
_SHORT_FORMS = {name: name[0] for name in _UNIT_NAMES if len(name) == 2}  # KB: K
_SIZE_UNITS = {"": 1} | {
    spelling.lower(): scale
    for name, scale in _UNIT_NAMES.items()
    for spelling in (name, _SHORT_FORMS.get(name, name))
}
_UNITS_TEXT = ", ".join(
    f"{_SHORT_FORMS[name]}/{name}" if name in _SHORT_FORMS else name for name in _UNIT_NAMES
)
_NUMBER = r"[0-9]*\.?[0-9]+"
# A sign is read so that ``-1GiB`` is told it must be positive, as ``0`` is, not that it is no size.
_SIZE_RE = re.compile(rf"^\s*(-?{_NUMBER})\s*([a-zA-Z]*)\s*$")
# "ms" before "m": the first alternative that matches wins. Every part has a unit ("1h30m"), or the
# whole text is one plain number of seconds ("600"): "1 2" or "1.5.5" are not durations.
_DURATION_PART_RE = re.compile(rf"({_NUMBER})\s*(ms|h|m|s)", re.IGNORECASE)
_DURATION_RE = re.compile(rf"^(?:{_NUMBER}\s*(?:ms|h|m|s)\s*)+$", re.IGNORECASE)
_PLAIN_RE = re.compile(rf"^{_NUMBER}$")
_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_size(text: str | int | float) -> int:
    """Parses a memory size such as ``6GiB``, ``512MB`` or ``1.5G`` into bytes.

    Decimal units (``GB``, ``G``) are powers of 1000, binary units (``GiB``) powers of 1024.

    Args:
        text: The size, or a plain number of bytes.

    Returns:
        The size in bytes.

    Raises:
        ValueError: If ``text`` is not a positive size.
    """
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise ValueError(f"not a memory size: {text!r} (expected e.g. 6GiB, 512MB)")
    if isinstance(text, (int, float)):
        try:
            value, unit = float(text), ""
        except OverflowError:
            raise ValueError(f"not a memory size: {text!r} (too large)") from None
    else:
        match = _SIZE_RE.match(text)
        if match is None:
            raise ValueError(f"not a memory size: {text!r} (expected e.g. 6GiB, 512MB)")
        value, unit = float(match.group(1)), match.group(2).lower()
        if unit not in _SIZE_UNITS:
            raise ValueError(f"unknown size unit {match.group(2)!r} in {text!r} (use {_UNITS_TEXT})")
    if not math.isfinite(value * _SIZE_UNITS[unit]):
        raise ValueError(f"not a memory size: {text!r} (too large)")
    size = int(value * _SIZE_UNITS[unit])
    if size <= 0:
        raise ValueError(f"memory size must be positive: {text!r}")
    return size


def parse_duration(text: str | int | float) -> float:
    """Parses a duration such as ``10m``, ``90s``, ``1h30m`` or ``600`` (seconds).

    Args:
        text: The duration, or a plain number of seconds.

    Returns:
        The duration in seconds.

    Raises:
        ValueError: If ``text`` is not a positive duration.
    """
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise ValueError(f"not a duration: {text!r} (expected e.g. 90s, 10m, 1h30m)")
    if isinstance(text, (int, float)):
        try:
            seconds = float(text)
        except OverflowError:
            raise ValueError(f"not a duration: {text!r} (too long)") from None
    else:
        stripped = text.strip()
        if _PLAIN_RE.match(stripped):
            seconds = float(stripped)
        elif _DURATION_RE.match(stripped):
            seconds = sum(
                float(p.group(1)) * _DURATION_UNITS[p.group(2).lower()]
                for p in _DURATION_PART_RE.finditer(stripped)
            )
        else:
            raise ValueError(f"not a duration: {text!r} (expected e.g. 90s, 10m, 1h30m)")
    if not math.isfinite(seconds):
        raise ValueError(f"not a duration: {text!r} (too long)")
    if seconds <= 0:
        raise ValueError(f"duration must be positive: {text!r}")
    return seconds


def format_bytes(size: float | None) -> str:
    """Formats a byte count with a binary unit, e.g. ``1.50 GiB``; ``-`` for None."""
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            break
        value /= 1024
    if unit == "B":
        return f"{int(value)} B"
    return f"{value:.2f} {unit}" if unit == "GiB" else f"{value:.0f} {unit}"


def format_size(size: int) -> str:
    """A size as the user may have written it: :func:`format_bytes`, then the decimal unit too when
    the size is a whole number of decimal megabytes but not of MiB (``16GB``: ``14.90 GiB (16 GB)``)."""
    text = format_bytes(size)
    if size <= 0 or size % 10**6 or size % 2**20 == 0:
        return text
    for unit, scale in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6)):
        if size >= scale:
            return f"{text} ({size / scale:g} {unit})"
    return text


def format_seconds(seconds: float | None) -> str:
    """Formats seconds for a human, e.g. ``4.2 s`` or ``3 min 05 s``; ``-`` for None."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def plural(count: int, noun: str) -> str:
    """``count`` and ``noun``, with an ``s`` unless there is exactly one: ``1 training``, ``0 trainings``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def whole_number(value: Any) -> int | None:
    """``value`` as an int if it is a whole number (an int, or numpy's from a frame), else None.

    ``True``, ``2.5`` and ``"3"`` are not: a count or a trial number given as one is a mistake.
    """
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None
