"""What a stored study accepts from its study file on a later run: what its trials were judged by.

A study keeps its objectives, memory limit, framework, the distributions its knobs were sampled
from, and the setup every training depends on besides its knobs (:func:`setup_of`: data, model, hyp,
epochs, ...); a study file that changes one of them is refused with one line naming the study's
value, before anything is stored (use another ``name`` to search under the new setting).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    IntDistribution,
    check_distribution_compatibility,
)

from search.errors import InputError
from search.frameworks import DEFAULT_FRAMEWORK
from search.study._space import EffectiveSpace, knob_distributions
from search.study._spec import StudySpec
from search.study._storage import safe_url
from search.study._stored import StudyKeys
from search.units import format_size

__all__ = ["check_compatible", "setup_of"]


def check_compatible(
    study: optuna.Study, spec: StudySpec, url: str, *, space: EffectiveSpace | None = None
) -> None:
    """Refuses a study file that changes what the stored study's trials were judged by.

    Args:
        study: The stored study.
        spec: The study file.
        url: Its storage, for the message.
        space: The space a run samples (None for a command that only reads: it samples nothing).

    Raises:
        InputError: For changed objectives, memory limit, framework or setup, or knob choices
            Optuna cannot sample in the stored study.
    """
    _check_same_objectives(study, spec, url)
    _check_same_limit(study, spec, url)
    _check_same_framework(study, spec, url)
    _check_same_setup(study, spec, url)
    if space is not None:
        _check_same_distributions(study, spec, space, url)


def _check_same_objectives(study: optuna.Study, spec: StudySpec, url: str) -> None:
    """Refuses a study file whose objectives are not the study's: every stored value is of its own
    objectives, and a view read with others would rank one memory under the other's name."""
    stored = study.user_attrs.get(StudyKeys.OBJECTIVES)
    directions = [d.name.lower() for d in study.directions]
    if stored is None and directions != spec.directions:
        # A study of the same name made by something else (Optuna itself, another tool).
        raise InputError(
            f"study {spec.name!r} in {safe_url(url)} is not a memfront study of these objectives (its "
            f"directions: {', '.join(directions)}): rename the study or use another storage"
        )
    if stored is not None and stored != spec.objectives:
        raise InputError(
            f"study {spec.name!r} in {safe_url(url)} has objectives {stored}, not {spec.objectives}: "
            "restore them in the study file, or rename the study or use another storage"
        )


def _check_same_framework(study: optuna.Study, spec: StudySpec, url: str) -> None:
    """Refuses a study file whose framework is not the one the study trained with (studies made
    before frameworks trained with yolov5): trials of two frameworks are not one search."""
    stored = study.user_attrs.get(StudyKeys.FRAMEWORK, DEFAULT_FRAMEWORK)
    if stored != spec.framework and study.get_trials(deepcopy=False):
        raise InputError(
            f"study {spec.name!r} in {safe_url(url)} trained with {stored}, but the study file says "
            f"{spec.framework}: set framework: {stored}, or rename the study"
        )


def _check_same_limit(study: optuna.Study, spec: StudySpec, url: str) -> None:
    """Refuses a changed memory limit for a study that already has trials.

    Each finished trial's feasibility was judged against the limit of its run, and Optuna never
    changes a finished trial: under another limit, old trials would keep verdicts that no longer
    hold (and configurations stopped under a lower one would never be retried).
    """
    stored = study.user_attrs.get(StudyKeys.MEMORY_LIMIT)
    if stored is None or int(stored) == spec.memory_limit or not study.get_trials(deepcopy=False):
        return
    raise InputError(
        f"study {spec.name!r} in {safe_url(url)} was run with memory_limit {format_size(int(stored))}, "
        f"the study file now says {format_size(spec.memory_limit)}: its trials were judged against the "
        "old limit; restore it, or give the study a new name to search under the new one"
    )


def setup_of(spec: StudySpec) -> dict[str, Any]:
    """What every training of the study depends on besides its knobs, as the study file writes it.

    ``data`` and ``hyp`` are kept as the file writes them (relative to it, where they are), so that a
    moved checkout is the same setup; a model file by its name, since the study file reader makes
    its path absolute. The device is not among them: each worker may name its own (``--device``,
    ``--devices``).
    """
    setup: dict[str, Any] = {
        "data": spec.data, "model": Path(spec.model).name, "hyp": spec.hyp, "epochs": spec.epochs,
        "train_images": spec.train_images, "gpu_memory_limit": spec.gpu_memory_limit,
    }  # fmt: skip
    if spec.data == "demo":
        setup.update(
            demo_images=spec.demo_images, demo_size=spec.demo_size, demo_val_images=spec.demo_val_images
        )
    return setup


def _check_same_setup(study: optuna.Study, spec: StudySpec, url: str) -> None:
    """Refuses a study file whose setup is not the one the study's trainings ran with (studies made
    before 2026-12-07 stored none: theirs is taken from the file that runs them next).

    A training's accuracy and memory hold for its data, model, hyp, epochs and subset: under another,
    the study would pool both as replicates of one config, and export would promise a peak measured
    on something else.
    """
    stored = study.user_attrs.get(StudyKeys.SETUP)
    if not isinstance(stored, dict) or not study.get_trials(deepcopy=False):
        return
    now = setup_of(spec)
    changed = [key for key in now if key in stored and stored[key] != now[key]]
    if not changed:
        return
    was = ", ".join(f"{key} {_value(key, stored[key])}" for key in changed)
    says = ", ".join(f"{key} {_value(key, now[key])}" for key in changed)
    raise InputError(
        f"study {spec.name!r} in {safe_url(url)} trained with {was}, the study file now says {says}: "
        "its results hold for the old setup; restore it, or rename the study to search under the new one"
    )


def _value(key: str, value: Any) -> str:
    if value is None:
        return "none"
    return format_size(int(value)) if key == "gpu_memory_limit" else str(value)


def _check_same_distributions(study: optuna.Study, spec: StudySpec, space: EffectiveSpace, url: str) -> None:
    """Refuses a study file whose knob choices Optuna cannot sample in the stored study: a knob's
    other choices, or a range where it had choices (an integer range may move: Optuna takes that)."""
    stored: dict[str, BaseDistribution] = {}
    for trial in study.get_trials(deepcopy=False):
        for name, distribution in trial.distributions.items():
            stored.setdefault(name, distribution)
    for name, distribution in knob_distributions(spec, space).items():
        if name not in stored:
            continue
        try:
            check_distribution_compatibility(stored[name], distribution)
        except ValueError:
            raise InputError(
                f"study {spec.name!r} in {safe_url(url)} sampled {name} from {_described(stored[name])}, "
                f"the study file now says {_described(distribution)}: Optuna cannot change a knob's "
                "choices within a study; restore them, or rename the study to search the new ones"
            ) from None


def _described(distribution: BaseDistribution) -> str:
    if isinstance(distribution, CategoricalDistribution):
        return str(list(distribution.choices))
    if isinstance(distribution, IntDistribution):
        return f"{{low: {distribution.low}, high: {distribution.high}, step: {distribution.step}}}"
    return repr(distribution)
