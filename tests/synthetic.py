"""Synthetic stored trials, shaped like the ones :func:`search.study._tell.tell` writes.

For the decision logic (what Optuna is told, what is on the front, what export picks): milliseconds
per test instead of real training.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import optuna
import yaml

from search.measure._footprint import framework_footprint_bytes
from search.study._stored import StudyKeys
from search.trial._record import MEMORY_CONSTRAINT, TrialRecord

GIB = 1024**3
DISTRIBUTIONS = {
    "batch": optuna.distributions.CategoricalDistribution([4, 8, 16, 32]),
    "imgsz": optuna.distributions.IntDistribution(64, 640, step=32),
}


def record(
    status: str = "ok",
    *,
    map50_95: float | None = 0.3,
    peak: int | None = GIB,
    epoch_seconds: float | None = 2.0,
    wall_seconds: float = 30.0,
    config: dict[str, Any] | None = None,
    used: dict[str, Any] | None = None,
) -> TrialRecord:
    """A trial record with the given figures."""
    config = config or {"batch": 8, "imgsz": 96, "cache": "none", "workers": 0, "amp": False}
    return TrialRecord(
        status=status,
        map50=None if map50_95 is None else min(1.0, map50_95 * 1.6),
        map50_95=map50_95,
        fitness=map50_95,
        peak_host_bytes=peak,
        peak_gpu_bytes=None,
        epoch_seconds=epoch_seconds,
        wall_seconds=wall_seconds,
        phases={},
        requested=config,
        used={"cache": config["cache"], "imgsz": config["imgsz"]} if used is None else used,
        limits={},
        epochs=[],
        memory={},
        gpu={},
        exit_code=0,
    )


def stored_trial(
    *,
    config: dict[str, Any],
    values: list[float] | None,
    violation: float | None,
    status: str = "ok",
    epoch_seconds: float | None = 2.0,
    cache_used: str | None = None,
    seed: int = 0,
    peak_gpu_bytes: int | None = None,
    gpu_total_bytes: int | None = None,
    peak_host_bytes: int | None = None,
) -> optuna.trial.FrozenTrial:
    """A finished trial as the study stores it: knobs, figures, the record and the constraint.

    ``values`` are the objective values (``None``: a FAIL trial); the accuracy is ``values[0]`` and
    the host peak ``values[1]`` for a feasible trial (or ``peak_host_bytes``, for a GPU study whose
    ``values[1]`` is the GPU peak). ``peak_gpu_bytes``: the GPU peak a CUDA trial would have
    measured, ``gpu_total_bytes`` its device's memory (no GPU here: stand-in figures, for the
    decision logic and the views only).
    """
    accuracy = None if values is None or (violation or 0) > 0 else values[0]
    peak = peak_host_bytes if peak_host_bytes is not None or values is None else int(values[1])
    used = {} if cache_used is None and status == "predicted" else {"cache": cache_used or config["cache"]}
    attrs: dict[str, Any] = {
        "status": status,
        "config": config,
        "record": {
            "status": status,
            "memory": {},
            "used": used,
            "wall_seconds": 30.0,
            "error": None,
            "gpu": {} if gpu_total_bytes is None else {"total_bytes": gpu_total_bytes},
        },
        "map50": accuracy,
        "map50_95": accuracy,
        "fitness": accuracy,
        "peak_host_bytes": peak,
        "peak_gpu_bytes": peak_gpu_bytes,
        "epoch_seconds": epoch_seconds,
        "seed": seed,
    }
    params = {"batch": config["batch"], "imgsz": config["imgsz"]}
    if values is None:
        return optuna.trial.create_trial(
            params=params, distributions=DISTRIBUTIONS, state=optuna.trial.TrialState.FAIL, user_attrs=attrs
        )
    return optuna.trial.create_trial(
        params=params,
        distributions=DISTRIBUTIONS,
        values=values,
        user_attrs=attrs,
        constraints=None if violation is None else {MEMORY_CONSTRAINT: violation},
    )


def replicated(
    config: dict[str, Any],
    accuracy: float,
    peak: float,
    *,
    limit: float,
    spread: float = 0.002,
    replicates: int = 2,
    **extra: Any,
) -> list[optuna.trial.FrozenTrial]:
    """Feasible trainings of one config with seeds 0, 1, ...: ``accuracy + spread``, ``- spread``, then
    ``accuracy`` itself (a measured noise: ``replicates - 1`` degrees of freedom)."""
    signs = [1, -1, *[0] * (replicates - 2)]
    return [
        stored_trial(
            config=config, values=[accuracy + sign * spread, peak], violation=peak - limit, seed=seed, **extra
        )
        for seed, sign in enumerate(signs[:replicates])
    ]


def knobs(batch: int = 8, imgsz: int = 96, cache: str = "none", workers: int = 0) -> dict[str, Any]:
    """A configuration of the five knobs."""
    return {"batch": batch, "imgsz": imgsz, "cache": cache, "workers": workers, "amp": False}


def stored_study_file(
    folder: Path,
    *,
    name: str,
    data: Path,
    limit: int,
    trials: Iterable[optuna.trial.FrozenTrial],
    memory_objective: str = "peak_host",
    keys: Mapping[str, object] | None = None,
) -> Path:
    """A study file and its SQLite storage holding ``trials``, as ``memfront run`` would leave them.

    ``memory_objective="peak_gpu"`` makes it a GPU study (device ``0``): only its stored records can
    exist here, not its trainings. ``keys``: more keys of the study file (e.g. ``accuracy_min_df``).
    """
    folder.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{folder / f'{name}.db'}"
    study = optuna.create_study(study_name=name, storage=storage, directions=["maximize", "minimize"])
    objectives = ["map50_95", memory_objective]
    study.set_user_attr(StudyKeys.OBJECTIVES, objectives)
    study.set_user_attr(StudyKeys.MEMORY_LIMIT, limit)
    # What a run on this machine measured and stored (one child per test session: it is cached).
    study.set_user_attr(StudyKeys.FOOTPRINT, framework_footprint_bytes())
    for trial in trials:
        study.add_trial(trial)
    path = folder / f"{name}.yaml"
    content: dict[str, object] = {"name": name, "data": str(data), "memory_limit": limit, "storage": storage}
    if memory_objective != "peak_host":
        content.update(objectives=objectives, device="0")
    content.update(keys or {})
    path.write_text(yaml.safe_dump(content))
    return path
