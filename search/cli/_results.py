"""The result commands of the CLI: ``report``, ``plot``, ``export`` (``run`` and ``status``: run_cli)."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from search.cli._options import output_path
from search.errors import InputError
from search.results._export import noise_text, write_text
from search.study._progress import config_text
from search.study._space import KNOBS
from search.units import format_bytes, format_seconds, parse_size

if TYPE_CHECKING:
    from search.results._results import StudyResults

__all__ = ["StorageOption", "StudyFile", "register"]

console = Console(stderr=True, soft_wrap=True)
out = Console(width=None if sys.stdout.isatty() else 160)  # pipes and files get whole tables
StudyFile = Annotated[Path, typer.Argument(help="Study definition, e.g. studies/demo.yaml.")]
StorageOption = Annotated[
    str | None,
    typer.Option(
        help="Optuna storage URL (overrides the study file; a relative file path is the working directory's)."
    ),
]


def _open(study_file: Path, storage: str | None) -> StudyResults:
    from search.results._results import load_study

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
                **{k: _plain(row[k]) for k in KNOBS},
                "config": {k: _plain(row[k]) for k in KNOBS},
                "seed": None if _missing(row["seed"]) else int(row["seed"]),
                "accuracy_mean": _plain(row["accuracy_mean"]),
                "accuracy_low": _plain(row["accuracy_low"]),
                "accuracy_high": _plain(row["accuracy_high"]),
                "replicates": _plain(row["replicates"]),
                "equivalent_to": _plain(row["equivalent_to"]),
                "memory_tie": _plain(row["memory_tie"]),
                "config_peak_host_bytes": _plain(row["config_peak_host_bytes"]),
                "config_epoch_seconds": _plain(row["config_epoch_seconds"]),
                "memory_source": _plain(row["memory_source"]),
                "cache_used": row["cache_used"],
                accuracy: _plain(row[accuracy]),
                "map50": _plain(row["map50"]),
                "map50_95": _plain(row["map50_95"]),
                "peak_host_bytes": _plain(row["peak_host_bytes"]),
                "predicted_full_bytes": _plain(row.get("predicted_full_bytes")),
                "peak_gpu_bytes": _plain(row["peak_gpu_bytes"]),
                "epoch_seconds": _plain(row["epoch_seconds"]),
                "error": row["error"],
            }
        )
    return rows


def _point_knobs(row: Any) -> dict[str, Any]:
    """A front row's knobs, with the system setting its figures are of."""
    knobs = row.to_dict()
    if not _missing(row.get("config_cache")):
        knobs["cache"], knobs["workers"] = row["config_cache"], row["config_workers"]
    return knobs


def _probe_entry(probe: Any) -> dict[str, Any]:
    return {
        key: getattr(probe, key)
        for key in (
            "knobs", "status", "peak_host_bytes", "peak_gpu_bytes", "peak_phase", "images_per_second",
            "projected_epoch_seconds", "seconds", "train_images", "val_images",
        )
    }  # fmt: skip


def _full_front_table(results: StudyResults, full: Any) -> Table:
    speed = ", epoch time" if results.speed_counts else ""
    table = Table(title=f"front over all five knobs (accuracy, memory{speed}; whole dataset)")
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
            format_bytes(_plain(row["peak_host_bytes"])), format_seconds(_plain(row["epoch_seconds"])),
            str(source),
        )  # fmt: skip
    return table


def _plain(value: Any) -> Any:
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
    results = _open(study_file, storage)
    spec, frame, accuracy = results.spec, results.trials, results.accuracy
    pareto = results.front()
    shown = frame[frame["duplicate_of"].isna()] if all_trials else pareto
    table = Table(
        title=f"{spec.name}: {'all trials' if all_trials else 'Pareto front'} "
        f"({accuracy} vs peak host memory, limit {format_bytes(spec.memory_limit)}; accuracy: mean over "
        f"the accuracy config's replicates, {100 * results.estimates.noise.confidence:.0f}% interval)"
    )
    columns = ["trial", "batch", "imgsz", "cache", "workers", "amp", f"{accuracy} mean", "interval", "n"]
    columns += [
        "peak host",
        "from",
        "full data (pred.)",
        "s/epoch",
        "status" if all_trials else "within noise of",
    ]
    for column in columns:
        table.add_column(column, justify="right")
    for _, row in shown.iterrows():
        on_front = bool(row["pareto"])
        # The same rule as the plot: a front point, or a training on a subset, shows its full config's
        # whole-dataset figures; any other training its own.
        whole = on_front or row["memory_source"] in ("probe", "model")
        peak = row["config_peak_host_bytes"] if whole else row["peak_host_bytes"]
        epoch = row["config_epoch_seconds"] if whole else row["epoch_seconds"]
        source = row["memory_source"] if whole and not _missing(row["memory_source"]) else "training"
        cache, workers = (row["config_cache"], row["config_workers"]) if on_front else (None, None)
        last = row["status"]
        if not all_trials:
            last = _ties_text(row)
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
            format_bytes(_plain(peak)),
            str(source),
            format_bytes(_plain(row["predicted_full_bytes"])),
            format_seconds(_plain(epoch)),
            last,
        )
    # With --json - or --csv - stdout carries the data: the table goes to stderr.
    shown_on = console if "-" in (str(csv), str(json_path)) else out
    shown_on.print(table)
    counts = results.status_counts()
    volume = results.hypervolume()
    roles = results.estimates.roles
    shown_on.print(
        f"trained with {spec.framework} ({spec.model}); an accuracy config is its {', '.join(roles.accuracy)}"
        f" ({', '.join(roles.system)}: memory and speed only)"
    )
    shown_on.print(
        f"front: {len(pareto)} accuracy configs; hypervolume {volume:.4f} ({accuracy} x GiB under the limit, "
        "from the means); status: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    )
    shown_on.print(noise_text(results.estimates))
    full = results.full_front()
    if results.probes or results.speed_counts:
        shown_on.print(_full_front_table(results, full))
    if results.probes:
        over = sum(1 for p in results.probes if not p.ok)
        shown_on.print(
            f"probes: {len(results.probes)} full configs measured on the whole dataset on this machine"
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
            "hypervolume": volume,
            "accuracy_signal": results.accuracy_signal,
            "accuracy_note": results.accuracy_note(),
            "dataset_note": results.dataset_note,
            "memory_note": results.memory_note,
            "noise": dataclasses.asdict(results.estimates.noise),
            "status_counts": counts,
            "memory_model": results.memory_model,
            "front": _figure_columns(pareto, accuracy, front=True),
            "full_front": [{k: _plain(v) for k, v in row.items()} for row in full.to_dict("records")],
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
            help="front.png (matplotlib) or front.html (plotly).",
        ),
    ],
    storage: StorageOption = None,
) -> None:
    """Plot accuracy vs peak memory: the front as a step line, the limit, every trial."""
    from search.results._render import write_plot

    results = _open(study_file, storage)
    written = write_plot(results.plot_data(), output)
    if results.memory_note:
        console.print(results.memory_note)
    console.print(f"wrote {written}")


def export(
    study_file: StudyFile,
    max_memory: Annotated[
        str | None, typer.Option(help="Host memory budget, e.g. 4GiB (default: the study's memory_limit).")
    ] = None,
    max_gpu_memory: Annotated[
        str | None,
        typer.Option(
            help="GPU memory budget, e.g. 16GiB: configs whose trainings' GPU peak exceeds it are out."
        ),
    ] = None,
    output_format: Annotated[str, typer.Option("--format", help="cmd, yaml or json.")] = "cmd",
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            callback=output_path,
            help="Write here instead of stdout.",
        ),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs of the full run (default: the study's).")] = None,
    ignore_prediction: Annotated[
        bool,
        typer.Option(help="Trust the measured peak even if the full-dataset prediction exceeds the budget."),
    ] = False,
    storage: StorageOption = None,
) -> None:
    """The best measured config for a memory budget, ready to run, and why it was chosen.

    Among accuracy configs that fit, the best mean; among those within noise of it, the cheapest in
    memory (ties: fastest); then its fastest system setting measured to fit. Memory is on the
    whole dataset: a training's on it, else a probe's, else (trained on a subset) the model's
    prediction. Where the data is not at hand (no probes, no model), a config trained on a subset
    is refused if its predicted whole-dataset peak exceeds the budget (`--ignore-prediction`
    overrides). With --max-gpu-memory, only the configs whose trainings on the GPU peaked within it
    take part (GPU memory does not grow with the dataset, the cache or the workers).
    """
    from search.results._export import (
        export_yaml,
        memfront_command,
        train_options,
        upstream_command,
        upstream_words,
        write_text,
    )
    from search.study._prepare import open_study, resolve_data, resolve_hyp_path, storage_url
    from search.study._spec import load_study_spec

    if output_format not in ("cmd", "yaml", "json"):
        raise InputError(f"--format: expected cmd, yaml or json, got {output_format!r}")
    if max_memory is None and max_gpu_memory is None:
        raise InputError("give a budget: --max-memory, --max-gpu-memory, or both")
    budgets = {}
    for flag, size in (("--max-memory", max_memory), ("--max-gpu-memory", max_gpu_memory)):
        try:
            budgets[flag] = None if size is None else parse_size(size)
        except ValueError as error:
            raise InputError(f"{flag}: {error}") from None
    if epochs is not None and epochs <= 0:
        raise InputError("--epochs: must be positive")

    # The command it prints trains on the study's data: the demo's is generated first (for a study
    # that exists), so that the choice sees its probes; reading alone never generates it.
    study_spec = load_study_spec(study_file)
    open_study(study_spec, storage_url(study_spec, study_file, storage), create=False)
    data = resolve_data(study_spec, study_file)
    results = _open(study_file, storage)
    spec, accuracy = results.spec, results.accuracy
    if results.dataset_note:
        console.print(f"{results.dataset_note}; memory as the trainings measured it")
    if results.memory_note:
        console.print(results.memory_note)
    budget = spec.memory_limit if budgets["--max-memory"] is None else budgets["--max-memory"]
    gpu_budget = budgets["--max-gpu-memory"]
    choice = results.choice(budget, max_gpu_memory=gpu_budget, check_prediction=not ignore_prediction)
    refused, row = choice.refused_by_prediction, choice.chosen
    if refused is not None:
        console.print(
            f"trial {int(refused['number'])} fits {format_bytes(budget)} as measured on "
            f"{refused['train_images']} images, but its peak predicted for the whole dataset is "
            f"{format_bytes(refused['predicted_full_bytes'])}: skipped (--ignore-prediction to use it)"
        )
    if row is None:
        nearest = choice.closest
        hint = (
            f"; closest: trial {int(nearest['number'])} ({config_text(_point_knobs(nearest))}) needs "
            f"{format_bytes(nearest['config_peak_host_bytes'])}"
            if nearest is not None
            else "; the study has no feasible trial at all"
        )
        fits = format_bytes(budget)
        if gpu_budget is not None:
            fits += f" of host memory and {format_bytes(gpu_budget)} of GPU memory"
            least = choice.least_gpu_bytes
            if least is not None and least > gpu_budget:  # the GPU rules out all: the host's closest is moot
                hint = f"; the least GPU memory a config peaked at: {format_bytes(least)}"
        console.print(f"memfront: no measured configuration fits {fits}{hint}")
        raise typer.Exit(1)
    options = train_options(row, spec, data, hyp=resolve_hyp_path(spec, study_file), epochs=epochs)
    explained = results.explain(budget, max_gpu_memory=gpu_budget, check_prediction=not ignore_prediction)
    for line in explained:
        console.print(line)
    if output_format == "cmd":
        text = f"{memfront_command(options)}\n# {upstream_words(options)}: {upstream_command(options)}\n"
    elif output_format == "yaml":
        text = export_yaml(options, row, spec, accuracy)
    else:
        text = (
            json.dumps(
                {
                    "trial": int(row["number"]),
                    "accuracy_mean": float(row["accuracy_mean"]),
                    "accuracy_low": _plain(row["accuracy_low"]),
                    "accuracy_high": _plain(row["accuracy_high"]),
                    "replicates": int(row["replicates"]),
                    "accuracy_signal": results.accuracy_signal,
                    "peak_host_bytes": int(row["config_peak_host_bytes"]),
                    "peak_gpu_bytes": None
                    if choice.estimate is None
                    else _plain(choice.estimate.peak_gpu_bytes),
                    "epoch_seconds": _plain(row["config_epoch_seconds"]),
                    "memory_source": _plain(row.get("memory_source")),
                    "probe": None if choice.system is None else choice.system.probe,
                    "why": explained,
                    "options": options,
                    "command": memfront_command(options),
                    "upstream": upstream_command(options),
                },
                indent=2,
            )
            + "\n"
        )
    write_text(output, text)


def register(app: typer.Typer) -> None:
    """Adds the study commands to the CLI."""
    app.command()(report)
    app.command()(plot)
    app.command()(export)
