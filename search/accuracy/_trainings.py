"""The trainings of a study as accuracy sees them, and what identifies each one.

A training's full config splits into its *accuracy config* (:func:`accuracy_key`: the knobs that
change what the network sees or how it is optimised) and its *system setting*
(:func:`system_key`: cache and workers, memory and speed knobs). Which draw of the training's
randomness it is (:func:`random_stream`) decides whether two trainings are one replicate or two
(:mod:`search.accuracy._estimates` says why).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from search.study._space import DEFAULT_ROLES, KnobRoles
from search.study._stored import StoredTrial

__all__ = [
    "AccuracyKey",
    "SystemKey",
    "Training",
    "accuracy_key",
    "key_text",
    "random_stream",
    "system_key",
    "trainings_of",
]

AccuracyKey = tuple[Any, ...]
SystemKey = tuple[Any, ...]


def accuracy_key(config: Mapping[str, Any], roles: KnobRoles = DEFAULT_ROLES) -> AccuracyKey:
    """The accuracy config of a full config: its accuracy knobs' values (yolov5's by default)."""
    return tuple(_plain(config[k]) for k in roles.accuracy)


def system_key(config: Mapping[str, Any], roles: KnobRoles = DEFAULT_ROLES) -> SystemKey:
    """The system setting of a full config: its system knobs' values (yolov5's by default)."""
    return tuple(_plain(config[k]) for k in roles.system)


def random_stream(config: Mapping[str, Any], seed: int | None) -> tuple[Any, ...]:
    """Which draw of the training's randomness a training is: equal streams, equal results.

    The seed, the worker count, and whether the RAM cache's check drew from the main process's
    ``random`` before the augmentations did (``cache=ram`` with ``workers`` 0; see
    :mod:`search.accuracy._estimates`).
    """
    workers = _plain(config["workers"])
    return (seed, workers, _plain(config["cache"]) == "ram" and workers == 0)


def key_text(key: AccuracyKey, roles: KnobRoles = DEFAULT_ROLES) -> str:
    """An accuracy config as people read it, e.g. ``batch 16, imgsz 128, amp off``."""
    parts = []
    for name, value in zip(roles.accuracy, key, strict=True):
        parts.append(f"{name} {('on' if value else 'off') if isinstance(value, bool) else value}")
    return ", ".join(parts)


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars from a DataFrame
        value = value.item()
    return value


@dataclasses.dataclass(frozen=True)
class Training:
    """One feasible, completed training of a study, as the accuracy estimates see it.

    Attributes:
        number: The Optuna trial number.
        config: The five knobs.
        seed: The training's seed.
        accuracy: The accuracy objective's value (e.g. mAP50-95).
        peak_host_bytes: Its measured peak host memory.
        epoch_seconds: Its median seconds per epoch, if an epoch ended.
        validation_seconds: Its median seconds per validation pass (part of an epoch's), if any.
        peak_gpu_bytes: Its measured peak GPU memory (None: it did not use CUDA).
    """

    number: int
    config: dict[str, Any]
    seed: int
    accuracy: float
    peak_host_bytes: float
    epoch_seconds: float | None = None
    validation_seconds: float | None = None
    peak_gpu_bytes: float | None = None

    @property
    def replicate_key(self) -> tuple[Any, ...]:
        """Trainings with the same key are one replicate (:func:`random_stream`)."""
        return random_stream(self.config, self.seed)


def trainings_of(trials: Iterable[StoredTrial], *, accuracy: str, default_seed: int = 0) -> list[Training]:
    """The feasible completed trainings among a study's stored trials (repeated proposals excluded).

    Args:
        trials: The stored trials.
        accuracy: The accuracy objective (a figure name, e.g. ``map50_95``).
        default_seed: The seed of trials stored without one.
    """
    trainings = []
    for trial in trials:
        value, peak = trial.figures.get(accuracy), trial.figures.get("peak_host_bytes")
        usable = trial.status == "ok" and trial.feasible and not trial.proposal_only
        if usable and trial.config is not None and value is not None and peak is not None:
            config = dict(trial.config)
            used = (trial.record or {}).get("used") or {}
            if used.get("cache_dropped"):  # the framework's RAM check dropped it: it trained without
                config["cache"] = used.get("cache") or "none"
            trainings.append(
                Training(
                    number=trial.number,
                    config=config,
                    seed=default_seed if trial.seed is None else trial.seed,
                    accuracy=float(value),
                    peak_host_bytes=float(peak),
                    epoch_seconds=trial.figures.get("epoch_seconds"),
                    validation_seconds=trial.validation_seconds,
                    peak_gpu_bytes=trial.figures.get("peak_gpu_bytes"),
                )
            )
    return trainings
