"""The ``export`` command: the best measured config for a memory budget, as a command to run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from search.cli._options import output_path, spare_the_study
from search.cli._results import StorageOption, StudyFile, console, open_results, plain
from search.errors import InputError
from search.units import format_bytes, format_size, parse_size

__all__ = ["register"]


def export(
    study_file: StudyFile,
    max_memory: Annotated[
        str | None, typer.Option(help="Host memory budget, e.g. 4GiB (default: the study's memory_limit).")
    ] = None,
    max_gpu_memory: Annotated[
        str | None,
        typer.Option(
            help="GPU memory budget, e.g. 16GiB: configs whose trainings' GPU peak exceeds it are out "
            "(ties within noise go to the least memory of the kind the study's front ranks)."
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
    memory (ties: fastest); then its leanest system setting measured to fit, or one that costs more
    and is faster beyond the epoch time's spread (a smaller lead is noise). Memory is on the
    whole dataset: a training's on it, else a probe's, else (trained on a subset) the model's
    prediction; a config whose peak was measured on fewer images than the dataset has now is
    refused if its predicted whole-dataset peak exceeds the budget (`--ignore-prediction`
    overrides). Where the dataset is not at hand, no probe or prediction is used: memory is as the
    trainings measured it (on their subset, if they trained on one), nothing is refused on a
    prediction, and export says so. With --max-gpu-memory, only the configs whose trainings on the
    GPU peaked within it take part (GPU memory does not grow with the dataset, the cache or the
    workers).
    """
    from search.results._command import (
        export_yaml,
        memfront_command,
        train_options,
        upstream_command,
        upstream_words,
        write_text,
    )
    from search.results._export import nothing_fits_text, spread_warning
    from search.study._prepare import open_study, resolve_data, resolve_hyp_path, storage_url
    from search.study._spec import load_study_spec

    if output_format not in ("cmd", "yaml", "json"):
        raise InputError(f"--format: expected cmd, yaml or json, got {output_format!r}")
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
    spare_the_study(study_file, storage, output)
    study_spec = load_study_spec(study_file)
    open_study(study_spec, storage_url(study_spec, study_file, storage), create=False)
    data = resolve_data(study_spec, study_file)
    results = open_results(study_file, storage)
    spec, accuracy = results.spec, results.accuracy
    if results.dataset_note:
        console.print(f"{results.dataset_note}; memory as the trainings measured it")
    if results.memory_note:
        console.print(results.memory_note)
    speed_note = results.speed_note()
    if speed_note:
        console.print(speed_note)
    gpu_budget = budgets["--max-gpu-memory"]
    choice = results.choice(
        budgets["--max-memory"], max_gpu_memory=gpu_budget, check_prediction=not ignore_prediction
    )
    budget = choice.max_memory_bytes  # the study's limit when --max-memory is not given
    refused, row = choice.refused_by_prediction, choice.chosen
    if refused is not None:
        console.print(
            f"trial {int(refused['number'])} fits {format_size(budget)} as measured on "
            f"{int(refused['train_images'])} images, but its peak predicted for the whole dataset is "
            f"{format_bytes(refused['predicted_full_bytes'])}: skipped (--ignore-prediction to use it)"
        )
    if row is None:
        console.print(f"memfront: {nothing_fits_text(choice)}")
        raise typer.Exit(1)
    options = train_options(row, spec, data, hyp=resolve_hyp_path(spec, study_file), epochs=epochs)
    explained = results.explain(budget, max_gpu_memory=gpu_budget, check_prediction=not ignore_prediction)
    for line in explained:
        console.print(line)
    if output_format == "cmd":
        text = f"{memfront_command(options)}\n# {upstream_words(options)}: {upstream_command(options)}\n"
    elif output_format == "yaml":
        text = export_yaml(options, row, spec, accuracy, warning=spread_warning(choice))
    else:
        text = (
            json.dumps(
                {
                    "trial": int(row["number"]),
                    "probed_only": bool(row["probed_only"]),
                    "accuracy_mean": float(row["accuracy_mean"]),
                    "accuracy_low": plain(row["accuracy_low"]),
                    "accuracy_high": plain(row["accuracy_high"]),
                    "replicates": int(row["replicates"]),
                    "accuracy_signal": results.accuracy_signal,
                    "peak_host_bytes": int(row["config_peak_host_bytes"]),
                    "peak_gpu_bytes": plain(row["config_peak_gpu_bytes"]),
                    "max_memory_bytes": budget,
                    "max_gpu_memory_bytes": gpu_budget,
                    "within_spread": choice.within_spread,
                    "gpu_within_spread": choice.gpu_within_spread,
                    "passed_over": None if choice.passed_over is None else choice.passed_over.config,
                    "speed_tie": None if choice.speed_tie is None else choice.speed_tie.config,
                    "epoch_seconds": plain(row["config_epoch_seconds"]),
                    "memory_source": plain(row.get("memory_source")),
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
    """Adds ``export`` to the CLI."""
    app.command()(export)
