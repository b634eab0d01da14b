"""The study's results as a pandas DataFrame: every trial, its figures, and the Pareto front.

One table feeds everything that shows results (``report``, ``plot``, ``export``, the notebook).
The front every view shows (report, plot, hypervolume, export) is the front of accuracy against
peak host memory among feasible trials (column ``pareto``). A study with a third objective
(``epoch_seconds``) also gets Optuna's own front over all its objectives (``Study.best_trials``,
what ``optuna best-trials`` prints) as column ``pareto_all``: a trial can be on it only because it
is faster, though another one is as accurate with less memory.
"""

from __future__ import annotations

import math
from typing import Any

import optuna
import pandas as pd

from search.study._space import KNOBS
from search.study._stored import StudyKeys, read_trials

__all__ = ["FRAME_COLUMNS", "front", "hypervolume", "pareto_mask", "status_counts", "trials_frame"]

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
    "cache_used",
    "imgsz_used",
    "train_images",
    "map50",
    "map50_95",
    "fitness",
    "peak_host_bytes",
    "peak_host_lower_bytes",
    "peak_host_upper_bytes",
    "peak_rss_tree_bytes",
    "peak_gpu_bytes",
    "epoch_seconds",
    "wall_seconds",
    "violation_bytes",
    "error",
]


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per finished trial with its configuration, status and figures."""
    trials = study.get_trials(deepcopy=False)
    complete = any(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    pareto_all = {t.number for t in study.best_trials} if complete else set()
    accuracy, memory_column = _front_axes(study)
    rows: list[dict[str, Any]] = []
    for trial in read_trials(trials):
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
                "cache_used": used.get("cache"),
                "imgsz_used": used.get("imgsz"),
                "train_images": used.get("train_images"),
                **trial.figures,  # the columns follow FRAME_COLUMNS, not this order
                "peak_host_lower_bytes": memory.get("peak_host_lower_bytes"),
                "peak_host_upper_bytes": memory.get("peak_host_upper_bytes"),
                "peak_rss_tree_bytes": memory.get("peak_rss_tree_bytes"),
                "wall_seconds": trial.wall_seconds,
                "violation_bytes": trial.violation,
                "error": record.get("error"),
            }
        )
    frame = pd.DataFrame(rows, columns=FRAME_COLUMNS)
    frame["pareto"] = pareto_mask(frame, accuracy=accuracy, memory=memory_column)
    return frame.sort_values("number").reset_index(drop=True)


def _front_axes(study: optuna.Study) -> tuple[str, str]:
    """The accuracy and memory columns of the study's first two objectives."""
    objectives = study.user_attrs.get(StudyKeys.OBJECTIVES) or ["map50_95", "peak_host"]
    return str(objectives[0]), f"{objectives[1]}_bytes"


def pareto_mask(frame: pd.DataFrame, *, accuracy: str, memory: str = "peak_host_bytes") -> pd.Series:
    """Which rows are on the front of ``accuracy`` (higher is better) against ``memory`` (lower is
    better): feasible original trials that no other one beats on one axis without losing on the other.
    """
    candidate = frame["feasible"].astype(bool) & frame["duplicate_of"].isna()
    acc = pd.to_numeric(frame[accuracy], errors="coerce")
    mem = pd.to_numeric(frame[memory], errors="coerce")
    candidate &= acc.notna() & mem.notna()
    points = list(zip(acc[candidate], mem[candidate], strict=True))
    on_front = pd.Series(False, index=frame.index)
    for index, a, m in zip(frame.index[candidate], acc[candidate], mem[candidate], strict=True):
        on_front[index] = not any((oa >= a and om <= m) and (oa > a or om < m) for oa, om in points)
    return on_front


def front(frame: pd.DataFrame, accuracy: str = "map50_95") -> pd.DataFrame:
    """The feasible Pareto-optimal trials, least memory first."""
    chosen = frame[frame["pareto"] & frame["feasible"]]
    return chosen.sort_values(["peak_host_bytes", accuracy], ascending=[True, False])


def hypervolume(frame: pd.DataFrame, *, accuracy: str, memory_limit: int) -> float:
    """Area dominated by the front in (accuracy, peak host memory) space, in accuracy x GiB.

    The reference point is (accuracy 0, memory at the limit): a front that reaches higher accuracy
    with less memory covers more.
    """
    points = sorted(
        (float(row["peak_host_bytes"]), float(row[accuracy]))
        for _, row in front(frame, accuracy).iterrows()
        if row["peak_host_bytes"] is not None and not math.isnan(row[accuracy])
    )
    area, best = 0.0, 0.0
    edges = [p[0] for p in points[1:]] + [float(memory_limit)]
    for (peak, acc), next_peak in zip(points, edges, strict=False):
        best = max(best, acc)
        area += best * max(0.0, min(next_peak, memory_limit) - peak)
    return area / 1024**3


def status_counts(frame: pd.DataFrame) -> dict[str, int]:
    """How many trials ended in each status (duplicates not counted)."""
    counted = frame[frame["duplicate_of"].isna()]
    return {str(k): int(v) for k, v in counted["status"].value_counts().items()}
