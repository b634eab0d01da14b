"""The study's results as a pandas DataFrame: every trial, its figures, and the Pareto front.

One table feeds everything that shows results (``report``, ``plot``, ``export``, the notebook).
The Pareto front is Optuna's own (``Study.best_trials``, which honours the constraints), so the
front here is the one ``optuna best-trials`` prints.
"""

from __future__ import annotations

import math
from typing import Any

import optuna
import pandas as pd

__all__ = ["FRAME_COLUMNS", "front", "hypervolume", "status_counts", "trials_frame"]

FRAME_COLUMNS = [
    "number",
    "state",
    "status",
    "feasible",
    "pareto",
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
    pareto = {t.number for t in study.best_trials} if _has_complete(study) else set()
    rows: list[dict[str, Any]] = []
    for trial in study.get_trials(deepcopy=False):
        if not trial.state.is_finished() or "discarded" in trial.user_attrs:
            continue  # a proposal discarded because another worker had it is not a trial of the study
        attrs = trial.user_attrs
        record = attrs.get("record") or {}
        memory = record.get("memory") or {}
        used = record.get("used") or {}
        config = attrs.get("config") or {}
        constraint = attrs.get("constraint")
        violation = constraint[0] if constraint else None
        feasible = trial.state == optuna.trial.TrialState.COMPLETE and (violation is None or violation <= 0)
        rows.append(
            {
                "number": trial.number,
                "state": trial.state.name,
                "status": _status(trial),
                "feasible": feasible,
                "pareto": trial.number in pareto and "duplicate_of" not in attrs,
                "duplicate_of": attrs.get("duplicate_of"),
                **{k: config.get(k) for k in ("batch", "imgsz", "cache", "workers", "amp")},
                "cache_used": used.get("cache"),
                "imgsz_used": used.get("imgsz"),
                "train_images": used.get("train_images"),
                "map50": attrs.get("map50"),
                "map50_95": attrs.get("map50_95"),
                "fitness": attrs.get("fitness"),
                "peak_host_bytes": attrs.get("peak_host_bytes"),
                "peak_host_lower_bytes": memory.get("peak_host_lower_bytes"),
                "peak_host_upper_bytes": memory.get("peak_host_upper_bytes"),
                "peak_rss_tree_bytes": memory.get("peak_rss_tree_bytes"),
                "peak_gpu_bytes": attrs.get("peak_gpu_bytes"),
                "epoch_seconds": attrs.get("epoch_seconds"),
                "wall_seconds": record.get("wall_seconds"),
                "violation_bytes": violation,
                "error": record.get("error"),
            }
        )
    frame = pd.DataFrame(rows, columns=FRAME_COLUMNS)
    return frame.sort_values("number").reset_index(drop=True)


def _status(trial: optuna.trial.FrozenTrial) -> str:
    status = trial.user_attrs.get("status")
    if status is not None:
        return str(status)
    # Failed with no record: its worker died, and the heartbeat check failed it.
    return "duplicate" if "duplicate_of" in trial.user_attrs else "lost"


def _has_complete(study: optuna.Study) -> bool:
    return any(t.state == optuna.trial.TrialState.COMPLETE for t in study.get_trials(deepcopy=False))


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
