"""The prediction commands of the CLI: ``predict`` and ``calibrate``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from search.cli._options import FrameworkOption, device_option, output_path, size_option, switch_option
from search.errors import InputError
from search.frameworks import get_framework, resolve_framework
from search.model._predict import TERMS, DatasetStats, MemoryModel, features
from search.model._start import load_starting_model
from search.units import format_bytes

__all__ = ["largest_fitting", "register"]

console = Console(stderr=True, soft_wrap=True)
out = Console(width=None if sys.stdout.isatty() else 160)  # pipes and files get whole tables
# Where the table goes when stdout carries the JSON (``--json -``): stdout stays pure JSON.
err_out = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
# AMP halves the activations' precision on a CUDA device: GPU memory. The host's peak (what this
# model predicts) is the same, and on a CPU trial AMP is off whatever was asked.
_AMP_NOTE = "AMP changes GPU memory only: the host prediction is the same with it on or off"
_DESCRIPTIONS = {
    "framework": "framework + model + optimizer",
    "activations": "batch activations (batch x imgsz^2)",
    "ram_cache": "RAM image cache (resized train+val images)",
    "worker_processes": "dataloader worker processes",
    "worker_cache_copies": "cache pages copied by forked workers",
}


def largest_fitting(
    model: MemoryModel,
    stats: DatasetStats,
    knobs: dict[str, Any],
    *,
    budget: int,
    train_images: int | None,
    rules: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The largest batch, the largest imgsz and the cache modes that fit ``budget``, others unchanged.

    ``rules``: the ``framework`` and ``device`` whose worker rule applies (yolov5 on a CPU by default).
    """

    def fits(**change: Any) -> bool:
        merged = {**knobs, **change}
        row = features(stats=stats, train_images=train_images, **(rules or {}), **merged)
        return model.predict(row).total_bytes <= budget

    def largest(candidates: list[int], name: str) -> int | None:
        best = None
        low, high = 0, len(candidates) - 1
        while low <= high:  # peak grows with batch and imgsz: bisect
            middle = (low + high) // 2
            if fits(**{name: candidates[middle]}):
                best, low = candidates[middle], middle + 1
            else:
                high = middle - 1
        return best

    # yolov5 and ultralytics cap the batch at the training images: a larger one changes nothing.
    images = train_images or len(stats.train_sizes) or 4096
    return {
        "budget_bytes": budget,
        "largest_batch": largest(list(range(1, min(4096, images) + 1)), "batch"),
        "batch_cap": min(4096, images),
        "largest_imgsz": largest(list(range(64, 4097, 32)), "imgsz"),
        "cache_modes": {mode: fits(cache=mode) for mode in ("none", "ram", "disk")},
    }


def predict(
    data: Annotated[str, typer.Option(help="YOLO data yaml.")],
    batch: Annotated[int, typer.Option(help="Batch size.")] = 16,
    imgsz: Annotated[int, typer.Option(help="Image size.")] = 640,
    cache: Annotated[str, typer.Option(help="none, ram or disk.")] = "none",
    workers: Annotated[int, typer.Option(help="Dataloader workers.")] = 0,
    amp: Annotated[
        str, typer.Option(help="Mixed precision: on or off (GPU memory only: no change on the host).")
    ] = "off",
    images: Annotated[
        int | None, typer.Option(help="Training images to assume (default: the dataset's).")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Model yaml or .pt (selects the calibration); default the framework's.")
    ] = None,
    framework: FrameworkOption = None,
    device: Annotated[str, typer.Option(help="cpu or a CUDA device (selects the calibration).")] = "cpu",
    max_memory: Annotated[str | None, typer.Option(help="Also say what fits this budget, e.g. 32GB.")] = None,
    json_path: Annotated[
        Path | None,
        typer.Option(
            "--json",
            callback=output_path,
            help="Write the prediction as JSON (- for stdout; the table then goes to stderr).",
        ),
    ] = None,
) -> None:
    """Predict a configuration's peak host memory, term by term, without training."""
    from search.data._dataset import load_dataset

    device_option(device)
    use_amp = switch_option(amp, "--amp")  # checked as `trial` checks it
    for flag, given, minimum in (("--batch", batch, 1), ("--imgsz", imgsz, 1), ("--workers", workers, 0)):
        if given < minimum:
            raise InputError(f"{flag}: must be >= {minimum}, got {given}")
    if images is not None and images <= 0:
        raise InputError(f"--images: must be positive, got {images}")
    if cache not in ("none", "ram", "disk"):
        raise InputError(f"--cache: expected none, ram or disk, got {cache!r}")
    budget = size_option(max_memory, "--max-memory")
    json_to_stdout = json_path is not None and str(json_path) == "-"
    tables = err_out if json_to_stdout else out
    framework, model = resolve_framework(framework, model)
    get_framework(framework).resolve_model(model)  # a checkpoint that is not here, as trial refuses it
    stats = DatasetStats.read(load_dataset(data))
    if stats.unreadable_note is not None:
        console.print(stats.unreadable_note)
    with console.status("this machine's calibration or framework footprint (measured once: seconds)"):
        start = load_starting_model(model, device, framework=framework)
    memory_model, origin = start.model, start.origin
    knobs: dict[str, Any] = {"batch": batch, "imgsz": imgsz, "cache": cache, "workers": workers}
    rules: dict[str, Any] = {"framework": framework, "device": device}
    prediction = memory_model.predict(features(stats=stats, train_images=images, **rules, **knobs))
    table = Table(title=f"predicted peak host memory (PSS of the trial's processes): {origin}")
    table.add_column("term")
    table.add_column("what", style="dim")
    table.add_column("bytes", justify="right")
    table.add_column("share", justify="right")
    for name in TERMS:
        value = prediction.terms[name]
        table.add_row(
            name, _DESCRIPTIONS[name], format_bytes(value), f"{100 * value / prediction.total_bytes:.0f}%"
        )
    table.add_row("total", "", format_bytes(prediction.total_bytes), "100%", style="bold")
    tables.print(table)
    if use_amp:
        tables.print(f"amp on: {_AMP_NOTE}")
    payload: dict[str, Any] = {
        **prediction.to_dict(),
        "model": memory_model.to_dict(),
        "origin": origin,
        "basis": start.to_dict(),
        "train_images": images or len(stats.train_sizes),
        "knobs": {**knobs, "amp": use_amp},
        "knobs_without_effect": {"amp": _AMP_NOTE},
    }
    if budget is not None:
        fitting = largest_fitting(memory_model, stats, knobs, budget=budget, train_images=images, rules=rules)
        payload["fits"] = fitting
        modes = ", ".join(m for m, ok in fitting["cache_modes"].items() if ok) or "none of them"
        batch_text = str(fitting["largest_batch"] or "-")
        if fitting["largest_batch"] is not None and fitting["largest_batch"] == fitting["batch_cap"]:
            batch_text += " (every training image: no larger batch)"
        tables.print(
            f"within {format_bytes(budget)}: largest batch {batch_text} "
            f"(at imgsz {imgsz}), largest imgsz {fitting['largest_imgsz'] or '-'} (at batch {batch}); "
            f"cache modes that fit: {modes}"
        )
    if json_to_stdout:
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    elif json_path is not None:
        json_path.write_text(json.dumps(payload, indent=2) + "\n")


def calibrate(
    model: Annotated[str | None, typer.Option(help="Model yaml or .pt to calibrate for.")] = None,
    framework: FrameworkOption = None,
    device: Annotated[str, typer.Option(help="cpu or a CUDA device.")] = "cpu",
    force: Annotated[bool, typer.Option(help="Measure again even if cached.")] = False,
) -> None:
    """Measure this machine's memory model with a few tiny real trials (cached)."""
    from search.model._calibration import cache_dir
    from search.model._calibration import calibrate as run_calibration

    def on_run(index: int, count: int, knobs: dict[str, Any]) -> None:
        console.print(f"calibration run {index + 1}/{count}: {knobs}")

    device_option(device)

    framework, model = resolve_framework(framework, model)
    calibration = run_calibration(model=model, device=device, framework=framework, force=force, on_run=on_run)
    fitted = calibration.model
    for name in TERMS:
        mark = "fitted" if name in fitted.fitted_terms else "prior"
        out.print(f"{name:<20} {fitted.coefficients[name]:>14.4g}  ({mark})")
    error = "-" if fitted.median_error is None else f"{100 * fitted.median_error:.1f}%"
    out.print(f"{fitted.samples} runs, median error {error}; cached in {cache_dir() / 'calibration'}")


def register(app: typer.Typer) -> None:
    """Adds the prediction commands to the CLI."""
    app.command()(predict)
    app.command()(calibrate)
