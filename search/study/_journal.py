"""A journal storage's file as memfront checks it before Optuna opens it: holds records, or is damaged."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

__all__ = ["journal_damage", "journal_holds_records", "not_a_journal"]

_JOURNAL_CHUNK = 1 << 16
_SQLITE_HEADER = b"SQLite format 3\x00"


def journal_holds_records(path: Path) -> bool:
    """Whether a journal file exists and is not empty (an empty one is what a killed first open
    leaves: it holds no study)."""
    return path.is_file() and path.stat().st_size > 0


def not_a_journal(path: Path) -> str | None:
    """Why a file that holds something is no Optuna journal at all (an SQLite database, any other
    file), judged by its first line; None for a journal, or a missing or empty file.

    Optuna reads such a file as a journal of no study, and would append its records to it.
    """
    try:
        with path.open("rb") as file:
            head = file.read(_JOURNAL_CHUNK)
    except OSError:
        return None
    if not head:
        return None
    if head.startswith(_SQLITE_HEADER):
        return f"{path} is an SQLite database, not a journal: write sqlite:///{path.resolve()}"
    if b"\n" not in head:
        # One unfinished line (a first write cut short, or a record longer than was read): what
        # journal_damage judges, and tells how to mend.
        return None
    try:
        record = json.loads(head.split(b"\n", 1)[0])
    except ValueError:
        record = None
    if isinstance(record, dict) and "op_code" in record:
        return None
    return f"{path} is not an Optuna journal (its first line is no journal record): name the study's journal"


def journal_damage(path: Path) -> str | None:
    """What is wrong with a journal file's last line, if it is not a whole Optuna journal record; None
    when it is one (or the file is missing or empty).

    Optuna reads past a last line that does not decode or does not end in a newline (a write in
    progress, or cut short by a crash) but writes after it, which makes it a line in the middle:
    from then on the journal cannot be read at all. A line seen damaged is read again a second
    later, since another worker may have been writing it.
    """
    damage = None
    for attempt in range(2):
        if attempt:
            time.sleep(1.0)
        last = _last_line(path)
        if last is None:
            return None
        if not last.endswith(b"\n"):
            damage = "its last line is not whole (no newline ends it)"
        elif not last.strip():
            damage = "it ends with an empty line"
        else:
            try:
                record = json.loads(last)
            except ValueError as error:
                damage = f"its last line is not an Optuna journal record ({error})"
            else:
                damage = None if isinstance(record, dict) else "its last line is not an Optuna journal record"
        if damage is None:
            return None
    return damage


def _last_line(path: Path) -> bytes | None:
    """The file's last line with its newline, if any (read from the end: a journal may be large);
    None for a missing or empty file."""
    try:
        with path.open("rb") as file:
            end = file.seek(0, os.SEEK_END)
            tail = b""
            while end > 0:
                start = max(0, end - _JOURNAL_CHUNK)
                file.seek(start)
                tail = file.read(end - start) + tail
                end = start
                if b"\n" in tail[:-1] or end == 0:
                    return tail[tail.rfind(b"\n", 0, len(tail) - 1) + 1 :]
    except OSError:
        pass
    return None
