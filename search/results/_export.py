"""The best configuration for a memory budget, and why.

One rule for ``export``, ``results.best`` and the planner's last trainings (:func:`choose_config`),
and what ``export`` prints about its choice; :mod:`search.results._command` writes the command.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pandas as pd

from search.accuracy._estimates import AccuracyEstimate, AccuracyEstimates, FullConfig
from search.accuracy._front import MEMORY_SPREAD, SPEED_SPREAD, needs_no_more_memory
from search.accuracy._pick import fits_budget, fits_gpu_with_spread, fits_with_spread, pick_config
from search.results._frame import front, status_counts
from search.study._progress import config_text
from search.units import format_bytes, format_seconds, format_size

__all__ = [
    "ExportChoice",
    "choice_lines",
    "choose_config",
    "interval_text",
    "noise_text",
    "nothing_fits_text",
    "spread_warning",
]


@dataclasses.dataclass(frozen=True)
class ExportChoice:
    """What ``export`` picks for a budget, why, and what it passed over.

    The rule is :func:`search.accuracy.pick_config` (one for ``export``, the notebook and the
    planner's last trainings).

    Attributes:
        chosen: The row to export (of the trials table: the chosen system setting's first trial;
            for a setting only probed, see :func:`_row_of`: ``probe`` names it), or None when
            nothing fits.
        estimate: The chosen accuracy config's estimate.
        system: The chosen system setting as measured (memory and speed medians).
        leanest: The chosen config's leanest system setting that fits (what the runner-up's memory
            is compared with).
        speed_base: The leanest setting the chosen one was weighed against for speed (the leanest
            that fits with memory's spread to spare, when any does): ``system`` is it, or shown
            faster than it.
        runner_up: The accuracy config the choice was weighed against: the best mean when the chosen
            one is cheaper and within noise of it, else the next best mean that fits.
        runner_up_beyond_noise: Whether the chosen config is more accurate than the runner-up beyond
            noise (False when the runner-up's mean is higher or the difference is noise).
        signal: Whether the study shows any accuracy difference beyond noise (else the pick is on
            memory and speed alone).
        refused_by_prediction: The trial that fits as measured (on the trials' subset) but whose
            peak predicted for the whole dataset exceeds the budget, when it would have been chosen.
        within_spread: The chosen setting's peak is within memory's spread of the budget
            (:data:`~search.accuracy.MEMORY_SPREAD`) and so is not shown to fit it, and none of the
            config's settings fits with that margin; export says so.
        passed_over: A setting of the chosen config shown faster that fits as measured but not
            with memory's spread to spare (export names it, and why).
        speed_tie: A setting of the chosen config with a shorter epoch time whose lead is within
            the epoch time's spread (:data:`~search.accuracy.SPEED_SPREAD`): not shown faster, so
            not worth the memory it costs (export names it, and why).
        gpu_within_spread: The chosen config's highest GPU peak is within memory's spread of the
            GPU budget, and no config within noise of the best fits it with that margin; export
            says so.
        closest: When nothing fits, the feasible front trial that needed the least host memory
            (with a GPU budget, the trial of any accuracy config that fits it).
        max_memory_bytes: The host memory budget the choice was made for.
        max_gpu_bytes: The GPU budget the choice was made for (None: none given).
        least_gpu_bytes: The lowest GPU peak of any accuracy config (None: none measured one), to
            say how far a GPU budget that nothing fits is from the leanest.
        statuses: When nothing fits, how many trials ended in each status (why none is feasible).
    """

    chosen: pd.Series | None
    estimate: AccuracyEstimate | None = None
    system: FullConfig | None = None
    leanest: FullConfig | None = None
    speed_base: FullConfig | None = None
    runner_up: AccuracyEstimate | None = None
    runner_up_beyond_noise: bool = False
    signal: bool = False
    refused_by_prediction: pd.Series | None = None
    within_spread: bool = False
    passed_over: FullConfig | None = None
    speed_tie: FullConfig | None = None
    gpu_within_spread: bool = False
    closest: pd.Series | None = None
    max_memory_bytes: int = 0
    max_gpu_bytes: int | None = None
    least_gpu_bytes: float | None = None
    statuses: dict[str, int] = dataclasses.field(default_factory=dict)


def choose_config(
    frame: pd.DataFrame,
    estimates: AccuracyEstimates,
    *,
    max_memory_bytes: int,
    max_gpu_bytes: int | None = None,
    check_prediction: bool = True,
) -> ExportChoice:
    """The one rule ``memfront export`` and the notebook apply to pick a configuration for a budget.

    Args:
        frame: :func:`search.results._frame.trials_frame` output, with ``predicted_full_bytes`` where known.
        estimates: The study's accuracy estimates (those the frame was made with).
        max_memory_bytes: The host memory budget.
        max_gpu_bytes: A GPU memory budget: the accuracy configs whose highest measured GPU peak
            exceeds it, or that no training measured on a GPU, do not fit.
        check_prediction: Refuse a full config whose whole-dataset prediction exceeds the budget.
    """
    rows = frame.set_index("number", drop=False)
    predicted = pd.to_numeric(rows.get("predicted_full_bytes", pd.Series(dtype=float)), errors="coerce")

    measured_fit = fits_budget(max_memory_bytes)

    def predicted_fit(system: FullConfig) -> bool:
        if system.source != "training":
            return measured_fit(system)  # a probe's figures, or the prediction itself: the whole dataset
        values = [predicted.get(n) for n in system.trials]
        return measured_fit(system) and all(v is None or v != v or v <= max_memory_bytes for v in values)

    shown_to_fit = fits_with_spread(max_memory_bytes)
    shown_to_fit_gpu = None if max_gpu_bytes is None else fits_gpu_with_spread(max_gpu_bytes)
    fit = predicted_fit if check_prediction else measured_fit
    preferences: dict[str, Any] = {"prefer": shown_to_fit, "prefer_gpu": shown_to_fit_gpu}
    picked = pick_config(estimates, fit, gpu_budget=max_gpu_bytes, **preferences)
    unchecked = None
    if check_prediction:
        unchecked = pick_config(estimates, measured_fit, gpu_budget=max_gpu_bytes, **preferences)
    gpu_peaks = [e.peak_gpu_bytes for e in estimates.configs.values() if e.peak_gpu_bytes is not None]
    least_gpu = min(gpu_peaks, default=None)
    refused = None
    if unchecked is not None and not predicted_fit(unchecked.system):
        refused = _row_of(rows, unchecked.estimate, unchecked.system)
    if picked is None:
        shown = front(frame)
        if max_gpu_bytes is not None:  # a front config over the GPU budget is no hint: any that fits it
            gpu = pd.to_numeric(frame["config_peak_gpu_bytes"], errors="coerce")  # NaN compares False
            shown = frame[(gpu <= max_gpu_bytes) & frame["duplicate_of"].isna()]
        closest = None if shown.empty else shown.sort_values("config_peak_host_bytes").iloc[0]
        return ExportChoice(
            chosen=None,
            refused_by_prediction=refused,
            closest=closest,
            signal=estimates.signal,
            max_memory_bytes=max_memory_bytes,
            max_gpu_bytes=max_gpu_bytes,
            least_gpu_bytes=least_gpu,
            statuses=status_counts(frame),
        )
    estimate, system, leanest, runner_up = picked.estimate, picked.system, picked.leanest, picked.runner_up
    beyond = runner_up is not None and estimates.better(estimate.key, runner_up.key)
    return ExportChoice(
        chosen=_row_of(rows, estimate, system), estimate=estimate, system=system, leanest=leanest,
        speed_base=picked.steps[0],
        runner_up=runner_up, runner_up_beyond_noise=beyond, signal=estimates.signal,
        refused_by_prediction=refused, within_spread=not picked.preferred, passed_over=picked.passed_over,
        speed_tie=picked.speed_tie, gpu_within_spread=not picked.gpu_preferred,
        max_memory_bytes=max_memory_bytes, max_gpu_bytes=max_gpu_bytes, least_gpu_bytes=least_gpu,
    )  # fmt: skip


PEAK_WORDS = {
    "training": "measured peak",
    "probe": "probed peak on the whole dataset",
    "model": "peak predicted for the whole dataset",
}


def _row_of(rows: pd.DataFrame, estimate: AccuracyEstimate, system: FullConfig) -> pd.Series:
    """The trials-table row that stands for a full config: its first trial's.

    ``probe`` names the probe that measured the setting, if any. For a setting only probed
    (``probed_only``), no trial is that full config: the row is the accuracy config's first trial's
    (``number``: whose accuracy config it is) with the probed setting, and the one-run columns (a
    training's own score, peak and speed, at another setting) the probe's figures or NaN, so that
    no column passes another setting's measurement off as this one's.
    """
    row = rows.loc[system.trial if system.trial is not None else estimate.trials[0]].copy()
    row["probe"], row["probed_only"] = system.probe, system.trial is None
    # The setting as it trained: where the framework's RAM check dropped the cache, ``none`` (its
    # trials asked for ``ram``, whose memory nothing measured).
    for knob in ("cache", "workers"):
        row[knob] = system.config[knob]
    if system.trial is None:
        for column in _ONE_RUN_COLUMNS:
            row[column] = math.nan
        row["peak_host_bytes"] = system.max_peak_host_bytes or system.peak_host_bytes
        row["epoch_seconds"] = math.nan if system.epoch_seconds is None else system.epoch_seconds
    row["config_peak_host_bytes"] = system.peak_host_bytes
    row["config_epoch_seconds"] = math.nan if system.epoch_seconds is None else system.epoch_seconds
    row["memory_source"] = system.source
    row["config_cache"], row["config_workers"] = system.config["cache"], system.config["workers"]
    return row


# A trial's own measurements, which a probed setting's row must not carry over from the trial that
# trained its accuracy config at another setting (its accuracy is the config's: ``accuracy_*``).
_ONE_RUN_COLUMNS = (
    "seed", "cache_used", "imgsz_used", "train_images", "map50", "map50_95", "fitness",
    "peak_host_lower_bytes", "peak_host_upper_bytes", "peak_rss_tree_bytes", "peak_gpu_bytes",
    "wall_seconds", "violation_bytes", "predicted_full_bytes",
)  # fmt: skip


def nothing_fits_text(choice: ExportChoice) -> str:
    """Why nothing was chosen, and what came closest: ``no measured configuration fits 1.00 GiB;
    closest: trial 2 (batch 8, imgsz 96, ...) needs 1.06 GiB``."""
    fits = format_size(choice.max_memory_bytes)
    if choice.max_gpu_bytes is not None:
        fits += f" of host memory and {format_bytes(choice.max_gpu_bytes)} of GPU memory"
    nearest, least = choice.closest, choice.least_gpu_bytes
    if nearest is not None:
        knobs = nearest.to_dict()
        trial = f"trial {int(nearest['number'])}"
        if isinstance(nearest.get("config_cache"), str):  # the system setting its figures are of
            setting = (nearest["config_cache"], nearest["config_workers"])
            if setting != (nearest["cache"], nearest["workers"]):
                trial += "'s accuracy config at another setting"
            knobs["cache"], knobs["workers"] = setting
        words = PEAK_WORDS.get(str(nearest.get("memory_source")), "measured peak")
        hint = (
            f"; closest: {trial} ({config_text(knobs)}) needs "
            f"{format_bytes(nearest['config_peak_host_bytes'])} ({words})"
        )
    elif choice.max_gpu_bytes is not None and least is not None:
        hint = f"; the least GPU memory a config peaked at: {format_bytes(least)}"
    else:
        ended = ", ".join(f"{count} {status}" for status, count in sorted(choice.statuses.items()))
        hint = "; the study has no feasible trial at all" + (
            f" ({ended}: `memfront report` says what to change, `memfront report --all` lists them)"
            if ended
            else ""
        )
    return f"no measured configuration fits {fits}{hint}"


def _signed(difference: float) -> str:
    """An accuracy difference with its sign, ``+0.012`` or ``-0.012``; ``0.000`` where it rounds to
    nothing (``-0.000`` would read as a difference against the chosen config)."""
    text = f"{difference:+.3f}"
    return "0.000" if float(text) == 0 else text


def choice_lines(
    choice: ExportChoice, estimates: AccuracyEstimates, *, accuracy: str, budget: int
) -> list[str]:
    """The choice explained: its interval, the runner-up and by how much, what the system setting buys."""
    estimate, system, leanest = choice.estimate, choice.system, choice.leanest
    if choice.chosen is None or estimate is None or system is None or leanest is None:
        return [nothing_fits_text(choice)]
    where = f"trial {system.trial}" if system.trial is not None else f"probe {system.probe}"
    lines = [
        f"{where}: {estimates.text(estimate.key)}; {_setting_text(system, estimates)}: "
        f"{accuracy} {interval_text(estimate)}, "
        f"{PEAK_WORDS[system.source]} {format_bytes(system.peak_host_bytes)}{_subset_peak_text(system)} "
        f"<= {format_size(budget)}" + _gpu_text(estimate, choice.max_gpu_bytes)
    ]
    warning = spread_warning(choice)
    if warning is not None:
        lines.append(warning)
    faster = choice.passed_over
    if faster is not None:
        seconds, peak = format_seconds(faster.epoch_seconds), format_bytes(faster.max_peak_host_bytes)
        lines.append(
            f"passed over: {_setting_text(faster, estimates)} ({seconds}/epoch, {peak}): "
            f"{_spread_text(choice)}, not shown to fit"
        )
    note = estimates.signal_text()
    if note is not None:
        lines.append(f"{note}: picked on memory and speed alone")
    runner = choice.runner_up
    if runner is not None:
        gap = estimate.mean - runner.mean
        threshold = estimates.noise.difference_threshold(estimate.replicates, runner.replicates)
        extra = runner.leanest.peak_host_bytes - leanest.peak_host_bytes
        if math.isinf(threshold):
            noise = estimates.noise
            unknown = f"has {noise.shortfall()}" if noise.measured else "is not measured yet"
            verdict = f"{_signed(gap)} against it; the noise {unknown}: not distinguishable"
        elif choice.runner_up_beyond_noise:
            verdict = f"beaten by {gap:.3f}, beyond the noise ±{threshold:.3f}"
        else:
            verdict = f"{_signed(gap)} against it, within the noise ±{threshold:.3f}: not distinguishable"
        host = " host" if choice.max_gpu_bytes is not None else ""
        memory = f"{format_bytes(abs(extra))} {'more' if extra >= 0 else 'less'}{host} memory"
        leaner, other = (leanest, runner.leanest) if extra >= 0 else (runner.leanest, leanest)
        if not needs_no_more_memory(leaner, other):
            memory += f" (within memory's {100 * MEMORY_SPREAD:.0f}% spread: no difference shown)"
        if choice.max_gpu_bytes is not None and runner.peak_gpu_bytes is not None:
            memory += f", a GPU peak of {format_bytes(runner.peak_gpu_bytes)}"
        lines.append(
            f"runner-up: {estimates.text(runner.key)}: {interval_text(runner)}; {verdict}; it needs {memory}"
        )
    speed_spread = f"the epoch time's {100 * SPEED_SPREAD:.0f}% spread"
    base = choice.speed_base
    if base is not None and system.config != base.config:
        picked = f"system setting {_setting_text(system, estimates)}: {format_seconds(system.epoch_seconds)}"
        base_text = f"{_setting_text(base, estimates)} ({format_bytes(base.peak_host_bytes)})"
        lines.append(
            f"{picked}/epoch against {format_seconds(base.epoch_seconds)} with {base_text}: "
            f"faster beyond {speed_spread}"
            if base.epoch_seconds
            else f"{picked}/epoch; {base_text} ended no epoch"
        )
    tie = choice.speed_tie
    if tie is not None and tie.epoch_seconds and system.epoch_seconds:
        lines.append(
            f"not shown faster: {_setting_text(tie, estimates)} ({format_seconds(tie.epoch_seconds)}/epoch "
            f"against {format_seconds(system.epoch_seconds)}, {format_bytes(tie.peak_host_bytes)}): "
            f"within {speed_spread}"
        )
    return lines


def _setting_text(system: FullConfig, estimates: AccuracyEstimates) -> str:
    """A full config's system setting: ``cache ram, workers 2``."""
    return ", ".join(f"{name} {system.config[name]}" for name in estimates.roles.system)


def noise_text(estimates: AccuracyEstimates) -> str:
    """How noisy one training's accuracy is, and whether the study can rank on accuracy."""
    noise = estimates.noise
    measured = f"accuracy noise: {noise.text()}"
    note = estimates.signal_text()
    if note is None and len(estimates.configs) < 2:
        return measured
    if note is not None and estimates.learned_little:
        return f"{measured}; {note}"  # what is wrong is the trainings, not the noise
    if not noise.known:  # the note would say again what the noise is: say only what it means
        note = (
            "accuracy differences are not ranked"
            if not noise.measured
            else f"{noise.shortfall()}: not ranked yet"
        )
    judged = f" ({noise.family_text})" if noise.family_wise_applies else ""
    if note is None:
        return f"{measured}; differences beyond it{judged} rank the front"
    if noise.known:  # the note names the noise again: say only what it means
        note = (
            f"no accuracy difference exceeds it{judged}: trials too short to rank accuracy; raise epochs, "
            "train on more images, or fine-tune from weights"
        )
    return f"{measured}; {note}"


def _spread_text(choice: ExportChoice, *, gpu: bool = False) -> str:
    # One config's peak repeats within MEMORY_SPREAD: a figure that close to the budget may not fit.
    budget = "the host budget" if choice.max_gpu_bytes is not None else "the budget"
    if gpu:
        budget = "the GPU budget"
    return f"within memory's {100 * MEMORY_SPREAD:.0f}% spread of {budget}"


def spread_warning(choice: ExportChoice) -> str | None:
    """The warning for a pick whose highest measured peak (host, or GPU against a GPU budget) is
    within memory's spread of the budget."""
    if choice.system is None or choice.estimate is None:
        return None
    warnings = []
    if choice.within_spread:
        peak = format_bytes(choice.system.max_peak_host_bytes)
        source = choice.system.source
        words = "highest measured peak" if source == "training" else PEAK_WORDS[source]
        if _subset_peak_text(choice.system):
            words = "subset trainings' highest measured peak"
        warnings.append(f"its {words} {peak} is {_spread_text(choice)}")
    gpu = choice.estimate.peak_gpu_bytes
    if choice.gpu_within_spread and gpu is not None:
        warnings.append(f"its highest GPU peak {format_bytes(gpu)} is {_spread_text(choice, gpu=True)}")
    if not warnings:
        return None
    return " and ".join(warnings) + ": not shown to fit, a run may exceed it"


def _subset_peak_text(system: FullConfig) -> str:
    """Where a setting's own subset trainings peaked above its whole-dataset figure (that peak is
    what must fit), e.g. ``, its subset trainings' highest measured peak 1.09 GiB``; else empty."""
    if system.source == "training" or system.max_peak_host_bytes <= system.peak_host_bytes:
        return ""
    return f", its subset trainings' highest measured peak {format_bytes(system.max_peak_host_bytes)}"


def _gpu_text(estimate: AccuracyEstimate, budget: int | None) -> str:
    """The chosen config's GPU peak against a GPU budget, e.g. ``; GPU peak 3.10 GiB <= 4.00 GiB``."""
    if budget is None or estimate.peak_gpu_bytes is None:
        return ""
    peak = format_bytes(estimate.peak_gpu_bytes)
    return f"; GPU peak {peak} <= {format_size(budget)} (its trainings' highest)"


def interval_text(estimate: AccuracyEstimate) -> str:
    """A mean with its interval and replicate count, e.g. ``0.302 [0.250, 0.354] (3 replicates)``."""
    count = f"{estimate.replicates} replicate{'s' if estimate.replicates != 1 else ''}"
    if math.isinf(estimate.high):
        return f"{estimate.mean:.3f} (interval unknown, {count})"
    return f"{estimate.mean:.3f} [{estimate.low:.3f}, {estimate.high:.3f}] ({count})"
