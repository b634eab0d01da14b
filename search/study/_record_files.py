"""The bulky parts of trial records (memory series, log tail), kept in JSON files beside the study.

Every ``get_trials`` call of every worker reads every user attribute of every trial, so a record
stored in the study (:mod:`search.study._stored`) leaves these parts out when a place for files is
given; :meth:`RecordFiles.restore` puts them back for whoever reads one trial whole.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

__all__ = ["RecordFiles"]

_TAIL_KEPT = 3
"""Log lines kept in the stored record itself: the reason a trial failed stays at hand."""


@dataclasses.dataclass(frozen=True)
class RecordFiles:
    """Where the bulky parts of trial records go: ``<folder>/trial-<number>-<token>.json``.

    Attributes:
        folder: The study file's records folder.
        token: The study's own (:attr:`search.study._stored.StudyKeys.RECORDS_TOKEN`), so that two
            storages' studies of one study file never write one file; None: ``trial-<number>.json``
            (as before tokens).
    """

    folder: Path
    token: str | None = None

    def path(self, number: int) -> Path:
        """The file of trial ``number``."""
        suffix = f"-{self.token}" if self.token else ""
        return self.folder / f"trial-{number:05d}{suffix}.json"

    def write(self, number: int, record: dict[str, Any]) -> str:
        """Moves the bulky parts of trial ``number``'s record (changed in place) to its file.

        Returns:
            The file's name, relative to :attr:`folder`.
        """
        bulky = {
            "series": record.get("memory", {}).pop("series", None),
            "log_tail": record.pop("log_tail", []),
        }
        path = self.path(number)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(bulky) + "\n")
        record["log_tail"] = bulky["log_tail"][-_TAIL_KEPT:]
        return path.name

    @staticmethod
    def restore(record: dict[str, Any], record_file: str | None, files: RecordFiles | None) -> dict[str, Any]:
        """The record with its bulky parts put back from their file (as stored where it cannot be read).

        Args:
            record: The stored record.
            record_file: Its file's name (relative to ``files``' folder) or path, if it has one.
            files: The study's record files (None: only an absolute ``record_file`` is read).
        """
        path = Path(record_file) if record_file else None
        if files is not None and path is not None and not path.is_absolute():
            path = files.folder / path
        if path is None or not path.is_file():
            return record
        try:
            bulky = json.loads(path.read_text())
        except (OSError, ValueError):
            return record
        full = json.loads(json.dumps(record))
        full.setdefault("memory", {})["series"] = bulky.get("series")
        full["log_tail"] = bulky.get("log_tail", [])
        return full
