"""What ``export`` writes: the chosen config's options as a ``memfront train`` command, the framework's
own command, and a YAML file ``memfront train --config`` runs (:mod:`search.results._export` chooses).

A training run with these options is measured as the study measured its trials: plots off, the same
allocator setting, the same seed.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from search.child.compat import allocator_environment
from search.frameworks import DEFAULT_FRAMEWORK, get_framework
from search.results._export import PEAK_WORDS
from search.study._spec import StudySpec
from search.trial._config import resolve_hyp
from search.units import format_bytes

__all__ = [
    "export_yaml",
    "memfront_command",
    "source_text",
    "train_options",
    "upstream_command",
    "upstream_words",
    "write_text",
]


_UPSTREAM_WORDS = {
    "yolov5": "upstream flags (yolov5 7.0.14 needs memfront's stack fixes, and the network for a font)",
    "ultralytics": "the same run with ultralytics' own command",
}


def _read_elsewhere(content: dict[str, Any], framework: str) -> bool:
    """Whether the framework's own command would read the data yaml's relative image folders or
    lists elsewhere than memfront does: a relative ``path:``, or none (yolov5 then takes its
    package folder; ultralytics the yaml's folder, as memfront)."""
    splits = [content.get(split) for split in ("train", "val")]
    if not any(isinstance(split, str) and not Path(split).is_absolute() for split in splits):
        return False  # absolute image folders or lists are read the same by all
    path = content.get("path")
    if path is None or str(path) == "":
        return framework == "yolov5"
    return not Path(str(path)).is_absolute()


# Where each framework's own command reads a data yaml's relative ``path:`` from (memfront's trials
# and ``memfront train`` read it against the yaml's folder).
_RELATIVE_PATH_BASE = {
    "yolov5": "against its package folder",
    "ultralytics": "against the working directory",
}


def upstream_words(options: dict[str, Any]) -> str:
    """What to call :func:`upstream_command`'s line for these options (and a warning where that
    command would read the data yaml's relative ``path:`` elsewhere than memfront does)."""
    framework = str(options.get("framework") or DEFAULT_FRAMEWORK)
    words = _UPSTREAM_WORDS.get(framework, "upstream flags")
    try:
        content = yaml.safe_load(Path(str(options["data"])).read_text())
    except (OSError, yaml.YAMLError, KeyError):
        content = None
    if isinstance(content, dict) and framework in _RELATIVE_PATH_BASE and _read_elsewhere(content, framework):
        words += (
            f"; it reads the data yaml's relative paths {_RELATIVE_PATH_BASE[framework]}: give the data "
            "yaml an absolute path: first"
        )
    return words


def train_options(
    row: pd.Series, spec: StudySpec, data: str, *, hyp: str | None = None, epochs: int | None = None
) -> dict[str, Any]:
    """The options of a full training run with the trial's knobs (all training images)."""
    options: dict[str, Any] = {
        "data": data,
        "framework": spec.framework,
        "model": spec.model,
        "epochs": int(epochs or spec.epochs),
        "batch": int(row["batch"]),
        "imgsz": int(row["imgsz"]),
        "cache": str(row["cache"]),
        "workers": int(row["workers"]),
        "amp": bool(row["amp"]),
        "device": spec.device,
        "seed": spec.seed,
        "plots": False,  # as every trial measured it (TrialConfig.plots)
    }
    if hyp is not None:
        options["hyp"] = hyp
    return options


def memfront_command(options: dict[str, Any]) -> str:
    """A ``memfront train`` command line that runs as printed, with yolov5's adaptations applied."""
    parts = ["memfront", "train"]
    for key, value in options.items():
        if isinstance(value, bool):  # amp, plots
            value = "on" if value else "off"
        parts += [f"--{key.replace('_', '-')}", str(value)]
    return shlex.join(parts)


def upstream_command(options: dict[str, Any]) -> str:
    """The framework's own command for these options (``yolov5 train ...``, ``yolo detect train ...``).

    yolov5 7.0.14 needs the stack fixes memfront applies (``memfront train`` runs with them);
    ultralytics runs as printed. Both start with the allocator setting of every trial
    (:func:`search.child.compat.allocator_environment`).
    """
    framework = get_framework(str(options.get("framework") or DEFAULT_FRAMEWORK))
    hyp = options.get("hyp")
    resolved = {**options, "hyp": resolve_hyp(str(hyp), framework.name) if hyp else None}
    # The allocator setting every trial ran with: without it the run's memory is not the one measured.
    environment = shlex.join(f"{name}={value}" for name, value in allocator_environment().items())
    return f"{environment} {framework.upstream_command(resolved)}"


def _gpu_peak_text(row: pd.Series) -> str:
    peak = row.get("config_peak_gpu_bytes")
    return "" if peak is None or peak != peak else f", GPU peak {format_bytes(peak)}"


def export_yaml(
    options: dict[str, Any], row: pd.Series, spec: StudySpec, accuracy: str, *, warning: str | None = None
) -> str:
    """The train options as YAML, with where they came from (and ``warning``, if any) as comments."""
    header = (
        f"# memfront export: study {spec.name}, {source_text(row)}: {accuracy} mean "
        f"{float(row['accuracy_mean']):.4f} over {int(row['replicates'])} replicates, "
        f"{PEAK_WORDS.get(str(row.get('memory_source')), 'measured peak')} "
        f"{format_bytes(row['config_peak_host_bytes'])}{_gpu_peak_text(row)}\n"
        f"# run it: memfront train --config THIS_FILE [--epochs N]\n"
        f"# plots: false as every trial ran (the framework's plots need memory the study did not measure)\n"
        f"# {upstream_words(options)}: {upstream_command(options)}\n"
    )
    if warning is not None:
        header += f"# warning: {warning}\n"
    return header + yaml.safe_dump(options, sort_keys=False)


def source_text(row: pd.Series) -> str:
    """Where an exported row's figures come from: ``trial 3``, or ``probe 6 (trial 0's accuracy
    config)`` for a setting only probed."""
    if not row.get("probed_only", False):
        return f"trial {int(row['number'])}"
    return f"probe {int(row['probe'])} (trial {int(row['number'])}'s accuracy config)"


def write_text(path: Path | None, text: str) -> None:
    """Writes to a file, or to stdout when no path or ``-`` is given."""
    if path is None or str(path) == "-":
        print(text, end="" if text.endswith("\n") else "\n", flush=True)
    else:
        path.write_text(text if text.endswith("\n") else text + "\n")
