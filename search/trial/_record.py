"""The record of one trial: what was asked, what ran, what it scored and what it cost."""

from __future__ import annotations

import dataclasses
import json
import re
import statistics
import sys
from pathlib import Path
from typing import Any, Literal, get_args

from search.trial._leftovers import CHILD_TEMP_PREFIX, TRIAL_PREFIX

__all__ = [
    "MEMORY_CONSTRAINT",
    "STATUSES",
    "RecordStatus",
    "TrialRecord",
    "epochs_seconds",
    "error_line",
    "memory_violation",
    "trial_constraints",
    "validation_seconds",
]

RecordStatus = Literal["ok", "memory_limit", "predicted", "timeout", "failed", "interrupted"]
"""How a trial ended, as its record says."""
STATUSES: tuple[str, ...] = get_args(RecordStatus)

# The data yaml a trial's child reads is its own copy, in the trial's folder (removed with it).
_TRIAL_DATA_YAML = re.compile(rf"/[^\s'\"]*?{re.escape(TRIAL_PREFIX)}[^/\s]+/data\.yaml")
# A path into a trial's folder or a child's temporary one (both removed with the trial), without
# the punctuation around it.
_TRIAL_FOLDER = re.compile(
    rf"(?:/[^/\s'\"(),:\]]+)*?/(?:{re.escape(TRIAL_PREFIX)}|{re.escape(CHILD_TEMP_PREFIX)})\d+-[^/\s'\"(),:\]]+"
)
_TERMINAL_COLOURS = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # yolov5 colours its prefixes ("train: ")

MEMORY_CONSTRAINT = "memory_limit"
"""The Optuna constraint (``Trial.set_constraint``) of every trial: peak host bytes minus the limit."""


def validation_seconds(epochs: list[dict[str, Any]]) -> float | None:
    """The median seconds of a record's validation passes: each epoch's seconds less its training's
    (None: no epoch ended)."""
    passes = [
        float(epoch["seconds"]) - float(epoch["train_seconds"])
        for epoch in epochs
        if epoch.get("seconds") is not None and epoch.get("train_seconds") is not None
    ]
    return statistics.median(passes) if passes else None


def epochs_seconds(epochs: list[dict[str, Any]]) -> float | None:
    """The seconds of a record's epochs together (training and validation passes); the rest of a
    trial's wall time is start-up and wind-down (None: no epoch ended)."""
    seconds = [float(epoch["seconds"]) for epoch in epochs if epoch.get("seconds") is not None]
    return sum(seconds) if seconds else None


def trial_constraints(trial: Any) -> dict[str, float]:
    """A stored trial's constraints (an Optuna ``FrozenTrial``).

    Studies written before memfront used ``Trial.set_constraint`` kept the violation in the user
    attribute ``constraint`` (Optuna's ``constraints_func`` copied it to the system attributes, where
    ``FrozenTrial.constraints`` finds it as ``"0"``; the random and grid samplers did not).
    """
    constraints = dict(trial.constraints)
    legacy = trial.user_attrs.get("constraint")
    if not constraints and legacy:
        constraints = {str(i): float(v) for i, v in enumerate(legacy)}
    return constraints


def memory_violation(trial: Any) -> float | None:
    """By how many bytes a stored trial's peak exceeded the limit (<= 0: it fitted); None if unknown."""
    constraints = trial_constraints(trial)
    if not constraints:
        return None
    return float(constraints.get(MEMORY_CONSTRAINT, max(constraints.values())))


@dataclasses.dataclass
class TrialRecord:
    """Everything a trial produced. Sizes in bytes, times in seconds.

    ``map50``, ``map50_95`` and ``fitness`` are those of the epoch with the best yolov5 fitness
    (0.1 mAP50 + 0.9 mAP50-95): the epoch yolov5 keeps as ``best.pt``.
    ``phases`` splits the child's life: start-up (imports, dataset scan, caching), training (yolov5's
    loop with validation), shut-down, in wall-clock seconds; ``paused_s`` is how long of it Ctrl-Z
    stopped the trial (:mod:`search._pause`; ``wall_seconds`` and the epochs' seconds leave it out).
    ``peak_gpu_bytes`` is None when the trial did not use CUDA (not 0: nothing was measured).
    ``timeline`` says when each phase began (:func:`search.trial._outcome.child_timeline`), and
    ``memory["peak_phase"]`` which one the peak fell in (None where no sample saw the peak: see
    :func:`peak_when`). ``probe`` is a probe's bounded loops (empty
    for a training).
    """

    status: str
    map50: float | None
    map50_95: float | None
    fitness: float | None
    peak_host_bytes: int | None
    peak_gpu_bytes: int | None
    epoch_seconds: float | None
    wall_seconds: float
    phases: dict[str, float | None]
    requested: dict[str, Any]
    used: dict[str, Any]
    limits: dict[str, Any]
    epochs: list[dict[str, Any]]
    memory: dict[str, Any]
    gpu: dict[str, Any]
    exit_code: int | None
    error: str | None = None
    log_tail: list[str] = dataclasses.field(default_factory=list)
    versions: dict[str, Any] = dataclasses.field(default_factory=dict)
    timeline: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    probe: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def validation_seconds(self) -> float | None:
        """The median seconds of its validation passes (:func:`validation_seconds`)."""
        return validation_seconds(self.epochs)

    def error_line(self, width: int = 240) -> str | None:
        """Its error as one line (None without one): :func:`error_line` of its error and data yaml."""
        return error_line(self.error, data=self.requested.get("data"), width=width)

    def to_dict(self) -> dict[str, Any]:
        """Returns the record as JSON-ready data."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialRecord:
        """Rebuilds a record from :meth:`to_dict` output (unknown keys are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def write_json(self, path: str | Path) -> None:
        """Writes the record as indented JSON; ``-`` writes it to stdout."""
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        if str(path) == "-":
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            Path(path).write_text(text)


def error_line(error: str | None, *, data: str | None = None, width: int = 240) -> str | None:
    """A trial's error as one line (None without one): the last line (a traceback's exception), cut
    at ``width``, without terminal colours; the trial's own copy of the data yaml is named as
    ``data``, the data yaml the trial was given, any other file of the trial's folder (removed with
    it) as ``<trial folder>/name``, so that trainings that fail alike say the same line."""
    if not error:
        return None
    lines = _TERMINAL_COLOURS.sub("", error).strip().splitlines()
    line = lines[-1].strip() if lines else error
    if data:
        line = _TRIAL_DATA_YAML.sub(lambda _: str(data), line)  # a path is no template
    line = _TRIAL_FOLDER.sub("<trial folder>", line)
    return line if len(line) <= width else line[: width - 3] + "..."


def peak_when(phase: str | None, *, measured: bool) -> str:
    """When a peak was set, as tables and progress lines print it: ``during training``.

    A measured peak has no phase when the kernel's high-water mark lifted it above every sample
    (:func:`search.trial._outcome.apply_kernel_floor`) in a tree of several processes: the mark may
    be the main process's shut-down or a dataloader or label-scan worker's at any time, and naming
    one would be a guess.
    """
    if phase:
        return f"during {phase}"
    return "between samples" if measured else "-"
