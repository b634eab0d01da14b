"""The study's results as a pandas DataFrame: every trial, its figures, and the Pareto front.

One table feeds everything that shows results (``report``, ``plot``, ``export``, the notebook).
Accuracy is a property of an accuracy config, estimated from all its trainings with the study's
noise (:mod:`search.accuracy`): every row carries its config's ``accuracy_mean``, interval
(``accuracy_low``/``accuracy_high``, NaN while the noise is unknown) and ``replicates``. The front
every view shows (report, plot, hypervolume, export) is the noise-aware front of accuracy against
the study's memory objective (:func:`search.accuracy.noise_front`: peak host memory, or with
``peak_gpu`` each accuracy config's median GPU peak), whose figure is ``front_memory_bytes``:
column ``pareto`` marks one row per front point, the first trial of the config's leanest measured
system setting, whose memory and speed are ``config_peak_host_bytes`` and ``config_epoch_seconds``,
on the whole dataset, with ``memory_source`` saying where they come from (``training``: medians over
that full config's trainings; ``probe``: a probe's; ``model``: trained on a subset only, predicted)
and ``config_cache``/``config_workers`` the system setting they are of (:mod:`search.probe`),
``config_probe`` the probe that measured it (None: not probed);
``equivalent_to`` names the cheaper front point it is equivalent to within noise, ``memory_tie`` a
more accurate point whose memory figure is no higher but not shown lower (the point stays because it
may need less, :func:`search.accuracy.needs_no_more_memory`). A study with a third objective
(``epoch_seconds``) also gets Optuna's own front over all its objectives (``Study.best_trials``,
what ``optuna best-trials`` prints) as column ``pareto_all``: a trial can be on it only because it
is faster, though another one is as accurate with less memory.
"""

from __future__ import annotations

import math
from typing import Any

import optuna
import pandas as pd

from search.accuracy._estimates import AccuracyEstimates, SystemsOf, estimate_accuracy
from search.accuracy._front import front_hypervolume, full_front, noise_front
from search.accuracy._noise import NoiseRules
from search.accuracy._trainings import trainings_of
from search.study._space import DEFAULT_ROLES, KNOBS, KnobRoles
from search.study._spec import MemoryAxis, memory_axis
from search.study._stored import StudyKeys, read_trials

__all__ = [
    "FRAME_COLUMNS",
    "apply_estimates",
    "front",
    "full_front_frame",
    "hypervolume",
    "read_results",
    "status_counts",
    "trials_frame",
]

FRAME_COLUMNS = [
    "number",
    "state",
    "status",
    "feasible",
    "pareto",
    "pareto_all",
    "duplicate_of",
    "batch",
    "imgsz",
    "cache",
    "workers",
    "amp",
    "seed",
    "accuracy_mean",
    "accuracy_low",
    "accuracy_high",
    "replicates",
    "equivalent_to",
    "memory_tie",
    "front_memory_bytes",
    "config_peak_host_bytes",
    "config_peak_gpu_bytes",
    "config_epoch_seconds",
    "memory_source",
    "config_cache",
    "config_workers",
    "config_probe",
    "cache_used",
    "imgsz_used",
    "train_images",
    "listed_images",
    "map50",
    "map50_95",
    "fitness",
    "peak_host_bytes",
    "peak_host_lower_bytes",
    "peak_host_upper_bytes",
    "peak_rss_tree_bytes",
    "peak_gpu_bytes",
    "gpu_total_bytes",
    "epoch_seconds",
    "wall_seconds",
    "violation_bytes",
    "error",
]


def trials_frame(study: optuna.Study, *, rules: NoiseRules | None = None) -> pd.DataFrame:
    """One row per finished trial with its configuration, status, figures and accuracy estimate."""
    return read_results(study, rules=rules)[0]


def read_results(
    study: optuna.Study,
    *,
    rules: NoiseRules | None = None,
    systems_of: SystemsOf | None = None,
    roles: KnobRoles = DEFAULT_ROLES,
) -> tuple[pd.DataFrame, AccuracyEstimates]:
    """The trials table (:func:`trials_frame`) and the accuracy estimates it was made with, from one
    read of the study's trials.

    Args:
        study: The study.
        rules: How accuracy differences are judged (the study file's ``accuracy_*`` keys:
            :attr:`search.study.StudySpec.noise_rules`; default: the defaults of those keys).
        systems_of: Where full configs' memory and speed come from (default: the trainings';
            :class:`search.probe.SystemFigures` adds probes and whole-dataset predictions).
        roles: Which knobs make an accuracy config (the study's framework's).
    """
    trials = study.get_trials(deepcopy=False)
    stored = read_trials(trials)
    accuracy, axis = _front_axes(study)
    estimates = estimate_accuracy(
        trainings_of(stored, accuracy=accuracy),
        rules=rules,
        systems_of=systems_of,
        roles=roles,
        memory=axis,
    )
    complete = any(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    pareto_all = {t.number for t in study.best_trials} if complete else set()
    rows: list[dict[str, Any]] = []
    for trial in stored:
        if not trial.state.is_finished() or trial.discarded is not None:
            continue  # a proposal discarded because another worker had it is not a trial of the study
        record = trial.record or {}
        memory = record.get("memory") or {}
        used = record.get("used") or {}
        config = trial.config or {}
        rows.append(
            {
                "number": trial.number,
                "state": trial.state.name,
                "status": trial.status,
                "feasible": trial.feasible,
                "pareto": False,
                "pareto_all": trial.number in pareto_all and trial.duplicate_of is None,
                "duplicate_of": trial.duplicate_of,
                **{k: config.get(k) for k in KNOBS},
                "seed": trial.seed,
                "cache_used": used.get("cache"),
                "imgsz_used": used.get("imgsz"),
                "train_images": used.get("train_images"),
                "listed_images": used.get("listed_images"),
                **trial.figures,  # the columns follow FRAME_COLUMNS, not this order
                "peak_host_lower_bytes": memory.get("peak_host_lower_bytes"),
                "peak_host_upper_bytes": memory.get("peak_host_upper_bytes"),
                "peak_rss_tree_bytes": memory.get("peak_rss_tree_bytes"),
                "gpu_total_bytes": (record.get("gpu") or {}).get("total_bytes"),
                "wall_seconds": trial.wall_seconds,
                "violation_bytes": trial.violation,
                "error": record.get("error"),
            }
        )
    frame = pd.DataFrame(rows, columns=FRAME_COLUMNS)
    apply_estimates(frame, estimates)
    return frame.sort_values("number").reset_index(drop=True), estimates


def apply_estimates(frame: pd.DataFrame, estimates: AccuracyEstimates) -> None:
    """Fills each row's accuracy estimate and marks the front's points (in place)."""
    points = noise_front(estimates)
    # A point's row is the first trial of its leanest system setting, or of the config when that
    # setting was only probed; the row then carries the point's figures and setting.
    first_trial = {
        p.estimate.key: p.estimate.trials[0] if p.estimate.leanest.trial is None else p.estimate.leanest.trial
        for p in points
    }
    representative = {first_trial[p.estimate.key]: p for p in points}
    columns: dict[str, list[Any]] = {name: [] for name in _ESTIMATE_COLUMNS}
    for _, row in frame.iterrows():
        config = {k: row[k] for k in KNOBS}
        known = all(v is not None and v == v for v in config.values())
        estimate = estimates.configs.get(estimates.key_of(config)) if known else None
        system = None
        if estimate is not None:
            wanted = estimates.system_of(config)
            system = next((s for s in estimate.systems if estimates.system_of(s.config) == wanted), None)
        point = representative.get(int(row["number"]))
        if point is not None:
            system = point.estimate.leanest
        values: dict[str, Any] = {
            "accuracy_mean": math.nan if estimate is None else estimate.mean,
            "accuracy_low": math.nan if estimate is None else _finite(estimate.low),
            "accuracy_high": math.nan if estimate is None else _finite(estimate.high),
            "replicates": 0 if estimate is None else estimate.replicates,
            "config_peak_host_bytes": math.nan if system is None else system.peak_host_bytes,
            "config_peak_gpu_bytes": math.nan if estimate is None or estimate.peak_gpu_bytes is None
            else estimate.peak_gpu_bytes,
            "config_epoch_seconds": math.nan if system is None or system.epoch_seconds is None
            else system.epoch_seconds,
            "memory_source": None if system is None else system.source,
            "config_cache": None if system is None else system.config["cache"],
            "config_workers": None if system is None else system.config["workers"],
            "config_probe": None if system is None else system.probe,
            "pareto": point is not None,
            "equivalent_to": None if point is None or point.equivalent_to is None
            else first_trial[point.equivalent_to],
            "memory_tie": None if point is None or point.memory_tie is None
            else first_trial[point.memory_tie],
            "front_memory_bytes": math.nan if point is None else point.memory_bytes,
        }  # fmt: skip
        for name in _ESTIMATE_COLUMNS:
            columns[name].append(values[name])
    for name, column in columns.items():
        text = name in (
            "equivalent_to", "memory_tie", "memory_source", "config_cache", "config_workers", "config_probe"
        )  # fmt: skip
        frame[name] = pd.Series(column, index=frame.index, dtype=object if text else None)


_ESTIMATE_COLUMNS = (
    "accuracy_mean",
    "accuracy_low",
    "accuracy_high",
    "replicates",
    "config_peak_host_bytes",
    "config_peak_gpu_bytes",
    "config_epoch_seconds",
    "memory_source",
    "config_cache",
    "config_workers",
    "config_probe",
    "pareto",
    "equivalent_to",
    "memory_tie",
    "front_memory_bytes",
)


def _finite(value: float) -> float:
    return value if math.isfinite(value) else math.nan


def _front_axes(study: optuna.Study) -> tuple[str, MemoryAxis]:
    """The accuracy column and the memory axis of the study's first two objectives."""
    objectives = study.user_attrs.get(StudyKeys.OBJECTIVES) or ["map50_95", "peak_host"]
    return str(objectives[0]), memory_axis(objectives)


def front(frame: pd.DataFrame) -> pd.DataFrame:
    """The front's points (one row each: its config's first trial at its leanest system setting),
    least memory (``front_memory_bytes``) first, the most accurate first among equals."""
    chosen = frame[frame["pareto"].astype(bool)]
    return chosen.sort_values(["front_memory_bytes", "accuracy_mean"], ascending=[True, False])


def full_front_frame(estimates: AccuracyEstimates, *, speed: bool) -> pd.DataFrame:
    """The front over all five knobs as a table (:meth:`search.results.StudyResults.full_front`)."""
    rows = [
        {
            **point.system.config,
            "accuracy_mean": point.estimate.mean,
            "accuracy_low": _finite(point.estimate.low),
            "accuracy_high": _finite(point.estimate.high),
            "replicates": point.estimate.replicates,
            "peak_host_bytes": point.system.peak_host_bytes,
            "epoch_seconds": point.system.epoch_seconds,
            "memory_source": point.system.source,
            "trial": point.system.trial,
            "probe": point.system.probe,
        }
        for point in full_front(estimates, speed=speed)
    ]
    columns = [*KNOBS, "accuracy_mean", "accuracy_low", "accuracy_high", "replicates", "peak_host_bytes"]
    columns += ["epoch_seconds", "memory_source", "trial", "probe"]
    frame = pd.DataFrame(rows, columns=columns)
    # Built from the rows, not cast afterwards: a column of ints and None would be floats by then.
    for name in ("trial", "probe"):
        frame[name] = pd.Series([row[name] for row in rows], index=frame.index, dtype=object)
    return frame


def hypervolume(frame: pd.DataFrame, *, accuracy: str, memory_limit: int | None) -> float:
    """Area dominated by the front's means in (accuracy, the front's memory) space, in accuracy x GiB.

    The reference point is (accuracy 0, memory at the limit): a front that reaches higher accuracy
    with less memory covers more. No limit (a GPU front before any GPU figure): 0.
    """
    if memory_limit is None:
        return 0.0
    shown = front(frame)
    peaks, means = shown["front_memory_bytes"].astype(float), shown["accuracy_mean"].astype(float)
    points = list(zip(peaks, means, strict=True))
    return front_hypervolume(points, memory_limit=memory_limit)


def status_counts(frame: pd.DataFrame) -> dict[str, int]:
    """How many trials ended in each status (duplicates not counted)."""
    counted = frame[frame["duplicate_of"].isna()]
    return {str(k): int(v) for k, v in counted["status"].value_counts().items()}
