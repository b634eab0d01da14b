"""The best configuration for a memory budget, as a command and as train options."""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from search.child.compat import MODEL_YAML_SUFFIXES
from search.results._frame import front
from search.study._spec import StudySpec
from search.trial._config import resolve_hyp
from search.units import format_bytes

__all__ = [
    "ExportChoice",
    "best_config",
    "choose_config",
    "closest_config",
    "memfront_command",
    "train_options",
    "upstream_command",
]


def best_config(
    frame: pd.DataFrame, *, max_memory_bytes: int, accuracy: str, check_prediction: bool = False
) -> pd.Series | None:
    """The most accurate feasible Pareto trial whose measured peak fits the budget, or None.

    Args:
        check_prediction: Also require the peak predicted for the whole dataset (column
            ``predicted_full_bytes``, where known) to fit.
    """
    fitting = front(frame, accuracy)
    fitting = fitting[fitting["peak_host_bytes"] <= max_memory_bytes]
    if check_prediction and "predicted_full_bytes" in fitting:
        predicted = pd.to_numeric(fitting["predicted_full_bytes"], errors="coerce")
        fitting = fitting[predicted.isna() | (predicted <= max_memory_bytes)]
    if fitting.empty:
        return None
    return fitting.sort_values([accuracy, "peak_host_bytes"], ascending=[False, True]).iloc[0]


def closest_config(frame: pd.DataFrame, *, accuracy: str) -> pd.Series | None:
    """The feasible Pareto trial that needed the least memory, or None if there is none."""
    chosen = front(frame, accuracy)
    return None if chosen.empty else chosen.sort_values("peak_host_bytes").iloc[0]


@dataclasses.dataclass(frozen=True)
class ExportChoice:
    """What ``export`` picks for a budget, and what it passed over.

    Attributes:
        chosen: The trial to export, or None when nothing fits.
        refused_by_prediction: The trial that fits as measured (on the trials' subset) but whose
            peak predicted for the whole dataset exceeds the budget, when it would have been chosen.
        closest: When nothing fits, the feasible front trial that needed the least memory.
    """

    chosen: pd.Series | None
    refused_by_prediction: pd.Series | None
    closest: pd.Series | None


def choose_config(
    frame: pd.DataFrame, *, max_memory_bytes: int, accuracy: str, check_prediction: bool = True
) -> ExportChoice:
    """The one rule ``memfront export`` and the notebook apply to pick a configuration for a budget.

    Args:
        frame: :func:`search.results._frame.trials_frame` output, with ``predicted_full_bytes`` where known.
        max_memory_bytes: The budget.
        accuracy: The accuracy column.
        check_prediction: Refuse a trial whose whole-dataset prediction exceeds the budget.
    """
    measured = best_config(frame, max_memory_bytes=max_memory_bytes, accuracy=accuracy)
    chosen = best_config(
        frame, max_memory_bytes=max_memory_bytes, accuracy=accuracy, check_prediction=check_prediction
    )
    refused = (
        measured
        if measured is not None and (chosen is None or chosen["number"] != measured["number"])
        else None
    )
    closest = closest_config(frame, accuracy=accuracy) if chosen is None else None
    return ExportChoice(chosen=chosen, refused_by_prediction=refused, closest=closest)


def train_options(
    row: pd.Series, spec: StudySpec, data: str, *, hyp: str | None = None, epochs: int | None = None
) -> dict[str, Any]:
    """The options of a full training run with the trial's knobs (all training images)."""
    options: dict[str, Any] = {
        "data": data,
        "model": spec.model,
        "epochs": int(epochs or spec.epochs),
        "batch": int(row["batch"]),
        "imgsz": int(row["imgsz"]),
        "cache": str(row["cache"]),
        "workers": int(row["workers"]),
        "amp": bool(row["amp"]),
        "device": spec.device,
        "seed": spec.seed,
    }
    if hyp is not None:
        options["hyp"] = hyp
    return options


def memfront_command(options: dict[str, Any]) -> str:
    """A ``memfront train`` command line that runs as printed, with yolov5's adaptations applied."""
    parts = ["memfront", "train"]
    for key, value in options.items():
        if key == "amp":
            value = "on" if value else "off"
        parts += [f"--{key.replace('_', '-')}", str(value)]
    return shlex.join(parts)


def upstream_command(options: dict[str, Any]) -> str:
    """The equivalent upstream ``yolov5 train`` flags (needs the stack fixes memfront applies)."""
    model = str(options["model"])
    parts = ["yolov5", "train", "--data", str(options["data"])]
    from_scratch = model.endswith(MODEL_YAML_SUFFIXES)
    parts += ["--cfg", model, "--weights", ""] if from_scratch else ["--weights", model]
    parts += [
        "--epochs",
        str(options["epochs"]),
        "--batch-size",
        str(options["batch"]),
        "--img",
        str(options["imgsz"]),
        "--workers",
        str(options["workers"]),
        "--device",
        str(options["device"]),
        "--seed",
        str(options["seed"]),
    ]
    if options["cache"] != "none":
        parts += ["--cache", str(options["cache"])]
    if options.get("hyp"):
        parts += ["--hyp", str(resolve_hyp(options["hyp"]))]
    return shlex.join(parts)


def export_yaml(options: dict[str, Any], row: pd.Series, spec: StudySpec, accuracy: str) -> str:
    """The train options as YAML, with where they came from as comments."""
    header = (
        f"# memfront export: study {spec.name}, trial {int(row['number'])}: {accuracy} "
        f"{float(row[accuracy]):.4f}, measured peak host memory {format_bytes(row['peak_host_bytes'])}\n"
        f"# run it: memfront train --config THIS_FILE [--epochs N]\n"
        f"# upstream flags (yolov5 7.0.14 needs memfront's stack fixes): {upstream_command(options)}\n"
    )
    return header + yaml.safe_dump(options, sort_keys=False)


def write_text(path: Path | None, text: str) -> None:
    """Writes to a file, or to stdout when no path or ``-`` is given."""
    if path is None or str(path) == "-":
        print(text, end="" if text.endswith("\n") else "\n", flush=True)
    else:
        path.write_text(text if text.endswith("\n") else text + "\n")
