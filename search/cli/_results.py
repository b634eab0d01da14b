"""The result commands of the CLI: ``report`` and ``plot`` (``export``: :mod:`search.cli._export`)."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from search.accuracy._front import SPEED_SPREAD
from search.cli._options import output_path, spare_the_study
from search.errors import InputError
from search.results._command import write_text
from search.results._export import noise_text
from search.results._render import PLOT_FORMATS
from search.study._space import KNOBS
from search.units import format_bytes, format_seconds, plural

if TYPE_CHECKING:
    from search.results._results import StudyResults

__all__ = ["StorageOption", "StudyFile", "console", "open_results", "plain", "register", "trained_elsewhere"]

console = Console(stderr=True, soft_wrap=True)
out = Console(width=None if sys.stdout.isatty() else 160)  # pipes and files get whole tables
StudyFile = Annotated[Path, typer.Argument(help="Study definition, e.g. studies/demo.yaml.")]
StorageOption = Annotated[
    str | None,
    typer.Option(
        help="Optuna storage URL (overrides the study file; a relative file path is the working directory's)."
    ),
]


def open_results(study_file: Path, storage: str | None, *outputs: Path | None) -> StudyResults:
    """The study's results, once no output file would overwrite what the study stored."""
    from search.results._load import load_study

    given = [str(path) for path in outputs if path is not None]
    if len(given) != len(set(given)):
        repeated = next(path for path in given if given.count(path) > 1)
        where = "standard output" if repeated == "-" else repeated
        raise InputError(f"--csv and --json both write to {where}: give each its own")
    spare_the_study(study_file, storage, *outputs)
    return load_study(study_file, storage=storage)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _ties_text(row: Any) -> str:
    """A front point's ties: the leaner point it is within accuracy noise of, and the more accurate
    one not shown to need less memory (``(memory)``)."""
    ties = [] if _missing(row["equivalent_to"]) else [f"trial {int(row['equivalent_to'])}"]
    if not _missing(row["memory_tie"]):
        ties.append(f"trial {int(row['memory_tie'])} (memory)")
    return ", ".join(ties) or "-"


def _cache_text(row: Any) -> str:
    """The cache asked for, and what yolov5 really used when it differed (e.g. ``ram->none``)."""
    used = row["cache_used"]
    return str(row["cache"]) + ("" if _missing(used) or used == row["cache"] else f"->{used}")


def _figure_columns(frame: Any, accuracy: str, *, front: bool = False) -> list[dict[str, Any]]:
    """JSON entries of trials; a front entry's knobs and figures are its point's (``memory_source``)."""
    rows = []
    for _, row in frame.iterrows():
        if front and not _missing(row["config_cache"]):
            row = row.copy()
            row["cache"], row["workers"] = row["config_cache"], row["config_workers"]
            row["peak_host_bytes"], row["epoch_seconds"] = (
                row["config_peak_host_bytes"],
                row["config_epoch_seconds"],
            )
        rows.append(
            {
                "number": int(row["number"]),
                "state": row["state"],
                "status": row["status"],
                "feasible": bool(row["feasible"]),
                "pareto": bool(row["pareto"]),
                "duplicate_of": None
                if row["duplicate_of"] is None or row["duplicate_of"] != row["duplicate_of"]
                else int(row["duplicate_of"]),
                **{k: plain(row[k]) for k in KNOBS},
                "config": {k: plain(row[k]) for k in KNOBS},
                "seed": None if _missing(row["seed"]) else int(row["seed"]),
                "accuracy_mean": plain(row["accuracy_mean"]),
                "accuracy_low": plain(row["accuracy_low"]),
                "accuracy_high": plain(row["accuracy_high"]),
                "replicates": plain(row["replicates"]),
                "equivalent_to": plain(row["equivalent_to"]),
                "memory_tie": plain(row["memory_tie"]),
                "front_memory_bytes": plain(row["front_memory_bytes"]),
                "config_peak_host_bytes": plain(row["config_peak_host_bytes"]),
                "config_peak_gpu_bytes": plain(row["config_peak_gpu_bytes"]),
                "config_epoch_seconds": plain(row["config_epoch_seconds"]),
                "memory_source": plain(row["memory_source"]),
                "cache_used": row["cache_used"],
                accuracy: plain(row[accuracy]),
                "map50": plain(row["map50"]),
                "map50_95": plain(row["map50_95"]),
                "peak_host_bytes": plain(row["peak_host_bytes"]),
                "predicted_full_bytes": plain(row.get("predicted_full_bytes")),
                "peak_gpu_bytes": plain(row["peak_gpu_bytes"]),
                "epoch_seconds": plain(row["epoch_seconds"]),
                "error": row["error"],
            }
        )
    return rows


def _limit_text(results: StudyResults) -> str:
    """The front's memory limit in words: a GPU front's is its GPU limit, else the GPU's memory."""
    limit = results.front_limit_bytes
    if results.front_has_a_limit:
        return f"limit {format_bytes(limit)}"
    return "no GPU limit set" if limit is None else f"the GPU's {format_bytes(limit)}"


def _probe_entry(probe: Any) -> dict[str, Any]:
    return {
        key: getattr(probe, key)
        for key in (
            "knobs", "status", "peak_host_bytes", "peak_gpu_bytes", "peak_phase", "images_per_second",
            "projected_epoch_seconds", "seconds", "train_images", "val_images",
        )
    }  # fmt: skip


def trained_elsewhere(row: Any) -> str | None:
    """``3 (trained at cache ram, workers 0)`` for a front row shown at a system setting its trial
    was not trained at (a probe's, or the model's); None otherwise."""
    if not row["pareto"] or _missing(row["config_cache"]):
        return None
    if (row["config_cache"], row["config_workers"]) == (row["cache"], row["workers"]):
        return None
    return f"{row['number']} (trained at cache {row['cache']}, workers {row['workers']})"


def _full_front_table(results: StudyResults, full: Any) -> Table:
    # A setting stays for speed only with a lead beyond the epoch time's spread: the title says so.
    speed = f", epoch time beyond its {100 * SPEED_SPREAD:.0f}% spread" if results.speed_counts else ""
    table = Table(title=f"front over all five knobs (accuracy, host memory{speed}; whole dataset)")
    for column in ("batch", "imgsz", "cache", "workers", "amp", "mean", "n", "peak host", "s/epoch", "from"):
        table.add_column(column, justify="right")
    for _, row in full.iterrows():
        where = f"trial {row['trial']}" if not _missing(row["trial"]) else f"probe {row['probe']}"
        source = row["memory_source"] if row["memory_source"] != "training" else where
        if row["memory_source"] == "probe":
            source = f"probe {row['probe']}"
        table.add_row(
            str(row["batch"]), str(row["imgsz"]), str(row["cache"]), str(row["workers"]),
            "on" if row["amp"] else "off", _number(row["accuracy_mean"]), str(int(row["replicates"])),
            format_bytes(plain(row["peak_host_bytes"])), format_seconds(plain(row["epoch_seconds"])),
            str(source),
        )  # fmt: skip
    return table


def plain(value: Any) -> Any:
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value


def _number(value: Any) -> str:
    return "-" if _missing(value) else f"{float(value):.3f}"


def _interval(row: Any) -> str:
    if _missing(row["accuracy_mean"]):
        return "-"
    if _missing(row["accuracy_low"]):
        return "unknown"
    return f"{float(row['accuracy_low']):.3f}-{float(row['accuracy_high']):.3f}"


def report(
    study_file: StudyFile,
    storage: StorageOption = None,
    all_trials: Annotated[
        bool, typer.Option("--all", help="Also list dominated and infeasible trials.")
    ] = False,
    csv: Annotated[
        Path | None,
        typer.Option(
            callback=output_path,
            help="Write the table as CSV (- for stdout).",
        ),
    ] = None,
    json_path: Annotated[
        Path | None,
        typer.Option(
            "--json",
            callback=output_path,
            help="Write front and trials as JSON (- for stdout).",
        ),
    ] = None,
) -> None:
    """The Pareto front as a table, its hypervolume and the status counts."""
    results = open_results(study_file, storage, csv, json_path)
    spec, frame, accuracy = results.spec, results.trials, results.accuracy
    pareto = results.front()
    shown = frame[frame["duplicate_of"].isna()] if all_trials else pareto
    table = Table(
        title=f"{spec.name}: {'all trials' if all_trials else 'Pareto front'} "
        f"({accuracy} vs peak {results.front_memory} memory, {_limit_text(results)}; accuracy: mean over "
        f"the accuracy config's replicates, {results.estimates.noise.interval_text})"
    )
    columns = ["trial", "batch", "imgsz", "cache", "workers", "amp", f"{accuracy} mean", "interval", "n"]
    # A study trained on a GPU: each accuracy config's highest GPU peak (what --max-gpu-memory
    # weighs), or on --all a trial's own; first where the front ranks it.
    gpu = bool(shown["peak_gpu_bytes"].notna().any())
    gpu_first = gpu and spec.memory_axis == "gpu"
    columns += ["peak GPU"] if gpu_first else []
    columns += ["peak host", "from", "full data (pred.)"]
    columns += ["peak GPU"] if gpu and not gpu_first else []
    columns += ["s/epoch", "status" if all_trials else "within noise of"]
    for column in columns:
        table.add_column(column, justify="right")
    elsewhere: list[str] = []  # front rows shown at a setting their trial was not trained at
    for _, row in shown.iterrows():
        on_front = bool(row["pareto"])
        # The same rule as the plot: a front point, or a training on a subset, shows its full config's
        # whole-dataset figures; any other training its own.
        whole = on_front or row["memory_source"] in ("probe", "model")
        peak = row["config_peak_host_bytes"] if whole else row["peak_host_bytes"]
        epoch = row["config_epoch_seconds"] if whole else row["epoch_seconds"]
        source = row["memory_source"] if whole and not _missing(row["memory_source"]) else "training"
        if source == "probe" and not _missing(row["config_probe"]):
            source = f"probe {int(row['config_probe'])}"
        cache, workers = (row["config_cache"], row["config_workers"]) if on_front else (None, None)
        if (trained_at := trained_elsewhere(row)) is not None:
            elsewhere.append(trained_at)
        last = row["status"]
        if not all_trials:
            last = _ties_text(row)
        gpu_peak = [format_bytes(plain(row["config_peak_gpu_bytes"] if on_front else row["peak_gpu_bytes"]))]
        table.add_row(
            str(row["number"]) + ("*" if on_front and all_trials else ""),
            str(row["batch"]),
            str(row["imgsz"]),
            _cache_text(row) if _missing(cache) else str(cache),
            str(row["workers"] if _missing(workers) else workers),
            "on" if row["amp"] else "off",
            _number(row["accuracy_mean"]),
            _interval(row),
            "-" if not row["replicates"] else str(int(row["replicates"])),
            *(gpu_peak if gpu_first else []),
            format_bytes(plain(peak)),
            str(source),
            format_bytes(plain(row["predicted_full_bytes"])),
            *(gpu_peak if gpu and not gpu_first else []),
            format_seconds(plain(epoch)),
            last,
        )
    # With --json - or --csv - stdout carries the data: the table goes to stderr.
    shown_on = console if "-" in (str(csv), str(json_path)) else out
    shown_on.print(table)
    if elsewhere:
        shown_on.print(
            "a front row is its accuracy config (its first trial named) at its leanest measured system "
            f"setting, which 'from' measured: trial {', '.join(elsewhere)}"
        )
    counts = results.status_counts()
    volume = results.hypervolume()
    of_gpu = "" if spec.memory_axis == "host" else " of GPU memory"
    under = "under the limit" if results.front_has_a_limit else f"under {_limit_text(results)}"
    roles = results.estimates.roles
    shown_on.print(
        f"trained with {spec.framework} ({spec.model}); an accuracy config is its {', '.join(roles.accuracy)}"
        f" ({', '.join(roles.system)}: memory and speed only)"
    )
    shown_on.print(
        f"front: {len(pareto)} accuracy configs; hypervolume {volume:.4f} ({accuracy} x GiB{of_gpu} {under}, "
        "from the means); status: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    )
    unranked = results.unranked_lines()
    for line in unranked:
        shown_on.print(line)
    shown_on.print(noise_text(results.estimates))
    speed_note = results.speed_note()
    if speed_note:
        shown_on.print(speed_note)
    full = results.full_front()
    if results.probes or results.speed_counts:
        shown_on.print(_full_front_table(results, full))
    if results.probes:
        over = sum(1 for p in results.probes if not p.ok)
        shown_on.print(
            f"probes: {plural(len(results.probes), 'full config')} measured "
            "on the whole dataset on this machine"
            + (f" ({over} stopped at their memory limit)" if over else "")
        )
    if results.dataset_note:
        shown_on.print(results.dataset_note)
    if results.memory_note:
        shown_on.print(results.memory_note)
    fitted = results.memory_model
    if fitted and fitted.get("median_error") is not None:
        shown_on.print(
            f"memory model (full-data predictions): fitted on {fitted['samples']} measured runs, "
            f"median error {100 * fitted['median_error']:.1f}%, max {100 * fitted['max_error']:.1f}%"
        )
    if csv is not None:
        write_text(csv, shown.to_csv(index=False))
    if json_path is not None:
        payload = {
            "study": spec.name,
            "framework": spec.framework,
            "model": spec.model,
            "accuracy_knobs": list(results.estimates.roles.accuracy),
            "system_knobs": list(results.estimates.roles.system),
            "objectives": spec.objectives,
            "memory_limit_bytes": spec.memory_limit,
            "front_memory": spec.memory_axis,
            "front_limit_bytes": results.front_limit_bytes,
            "hypervolume": volume,
            "accuracy_signal": results.accuracy_signal,
            "accuracy_note": results.accuracy_note(),
            "unranked": unranked,
            "speed_note": speed_note,
            "dataset_note": results.dataset_note,
            "memory_note": results.memory_note,
            "noise": dataclasses.asdict(results.estimates.noise),
            "status_counts": counts,
            "memory_model": results.memory_model,
            "front": _figure_columns(pareto, accuracy, front=True),
            "full_front": [{k: plain(v) for k, v in row.items()} for row in full.to_dict("records")],
            "probes": [_probe_entry(p) for p in results.probes],
            "trials": _figure_columns(frame, accuracy),
        }
        write_text(json_path, json.dumps(payload, indent=2) + "\n")


def plot(
    study_file: StudyFile,
    output: Annotated[
        Path,
        typer.Option(
            "-o",
            "--output",
            callback=output_path,
            help=f"The plot file, e.g. front.png; its suffix picks the format: {PLOT_FORMATS}.",
        ),
    ],
    storage: StorageOption = None,
) -> None:
    """Plot accuracy vs peak memory: the front as a step line, the limit, every trial."""
    from search.model._calibration import cache_dir
    from search.results._render import write_plot

    # matplotlib caches its font list in the home on first use: this command's goes to memfront's.
    os.environ.setdefault("MPLCONFIGDIR", str(cache_dir() / "matplotlib"))

    results = open_results(study_file, storage, output)
    written = write_plot(results.plot_data(), output)
    if results.memory_note:
        console.print(results.memory_note)
    console.print(f"wrote {written}")


def register(app: typer.Typer) -> None:
    """Adds the study commands to the CLI."""
    app.command()(report)
    app.command()(plot)
