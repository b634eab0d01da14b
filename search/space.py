"""The search space as searched on this machine, and how a trial samples it."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import optuna

from search.studyfile import IntRange, StudySpec

__all__ = ["KNOBS", "EffectiveSpace", "effective_space", "suggest"]

KNOBS = ("batch", "imgsz", "cache", "workers", "amp")


@dataclasses.dataclass(frozen=True)
class EffectiveSpace:
    """The knobs as searched on this machine: choices per knob, and what was fixed and why."""

    choices: dict[str, list[Any]]
    notes: tuple[str, ...]

    @property
    def searched(self) -> list[str]:
        """Knobs with more than one choice."""
        return [k for k in KNOBS if len(self.choices[k]) > 1]

    @property
    def size(self) -> int:
        """Number of distinct configurations."""
        total = 1
        for values in self.choices.values():
            total *= len(values)
        return total


def effective_space(spec: StudySpec) -> EffectiveSpace:
    """Removes the knobs that cannot matter here, saying so: AMP on a CPU, workers beyond the cores."""
    choices = {name: spec.space.choices(name) for name in KNOBS}
    notes = []
    if spec.device == "cpu" and True in choices["amp"]:
        choices["amp"] = [False]
        notes.append("amp fixed off: this study runs on the CPU and yolov5's AMP is CUDA-only")
    cpus = os.cpu_count() or 1
    if max(choices["workers"]) > cpus:
        clipped = sorted({min(w, cpus) for w in choices["workers"]})
        notes.append(f"workers clipped to this machine's {cpus} CPUs: {choices['workers']} -> {clipped}")
        choices["workers"] = clipped
    return EffectiveSpace(choices=choices, notes=tuple(notes))


def suggest(trial: optuna.Trial, spec: StudySpec, space: EffectiveSpace) -> dict[str, Any]:
    """Samples one configuration; a knob with a single choice is fixed and noted on the trial."""
    params: dict[str, Any] = {}
    for name in KNOBS:
        values = space.choices[name]
        declared = getattr(spec.space, name)
        if len(values) == 1:
            params[name] = values[0]
            trial.set_user_attr(f"fixed_{name}", values[0])
        elif isinstance(declared, IntRange) and spec.sampler != "grid" and values == declared.values():
            params[name] = trial.suggest_int(name, declared.low, declared.high, step=declared.step)
        else:
            params[name] = trial.suggest_categorical(name, values)
    return params
