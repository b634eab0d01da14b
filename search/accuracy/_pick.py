"""The one rule that picks a configuration for a memory budget, and the configs it can pick.

``memfront export``, the notebook's ``choice()`` and the study's planner (which spends a study's last
trainings on what export would pick) all apply :func:`pick_config`; there is no second definition.

The rule: among the accuracy configs with a measured system setting that fits the budget, take the
best mean; among those not distinguishable from it beyond noise, the one that fits in the least
memory (ties: the fastest); then, for it, a system setting measured to fit, among those that fit
with memory's own spread to spare when any does (export's ``prefer``: a peak measured once within
:data:`~search.accuracy.MEMORY_SPREAD` of the budget is not shown to fit it): the leanest, unless a
setting that costs more memory is shown faster (:func:`~search.accuracy.shown_faster`: beyond the
epoch time's spread, :data:`~search.accuracy.SPEED_SPREAD`). From the leanest up, each step to more
memory must buy speed beyond the spread over the step before: the pick is shown faster than each
step it replaced, and no setting weighed is shown faster than the pick. With a GPU budget, only the
accuracy configs whose trainings' highest GPU peak fits it take part (one figure per accuracy
config: :attr:`~search.accuracy.AccuracyEstimate.peak_gpu_bytes`), those that fit it with the spread
to spare first. "The least memory" is the memory the study's front ranks
(:attr:`~search.accuracy.AccuracyEstimates.memory_axis`): in a ``peak_gpu`` study, GPU memory.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

from search.accuracy._estimates import AccuracyEstimate, AccuracyEstimates, FullConfig
from search.accuracy._front import MEMORY_SPREAD, shown_faster, speed_steps
from search.accuracy._trainings import AccuracyKey

__all__ = [
    "Pick",
    "export_decisions",
    "fits_budget",
    "fits_gpu_budget",
    "fits_gpu_with_spread",
    "fits_with_spread",
    "pick_config",
]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Pick:
    """What the rule picks for one budget.

    Attributes:
        estimate: The chosen accuracy config's estimate.
        system: Its system setting: the leanest that fits (among those ``prefer`` holds for, when
            any), or one that costs more memory and is shown faster than it.
        leanest: Its leanest system setting that fits (what the runner-up's memory is compared with).
        runner_up: The config the choice was weighed against: the best mean when the chosen one is
            cheaper and within noise of it, else the next best mean that fits (None: nothing else fits).
        preferred: Whether ``system`` is one the caller's ``prefer`` holds for (always True
            without one); False when none of the chosen config's fitting settings is.
        passed_over: A fitting setting shown faster than ``system`` that ``prefer`` ruled out (the
            fastest such), if any.
        speed_tie: A setting ``system`` was weighed against that has a shorter epoch time, but not
            shorter beyond the spread (the fastest such), if any: its lead is not shown, so it does
            not buy the memory it costs.
        steps: The settings weighed that each buy speed beyond the spread over the one before,
            leanest first (:func:`~search.accuracy.speed_steps`); ``system`` is the last.
        gpu_preferred: Whether the chosen config is one ``prefer_gpu`` holds for (always True
            without one).
    """

    estimate: AccuracyEstimate
    system: FullConfig
    leanest: FullConfig
    runner_up: AccuracyEstimate | None
    preferred: bool = True
    passed_over: FullConfig | None = None
    gpu_preferred: bool = True
    speed_tie: FullConfig | None = None
    steps: tuple[FullConfig, ...] = ()


def pick_config(
    estimates: AccuracyEstimates,
    fits: Callable[[FullConfig], bool],
    *,
    gpu_budget: float | None = None,
    prefer: Callable[[FullConfig], bool] | None = None,
    prefer_gpu: Callable[[AccuracyEstimate], bool] | None = None,
) -> Pick | None:
    """The rule applied to the full configs for which ``fits`` holds; None when none does.

    Args:
        estimates: The study's accuracy estimates.
        fits: Whether a full config fits the host memory budget (:func:`fits_budget`).
        gpu_budget: A GPU memory budget in bytes, if any: a config none of whose trainings measured
            the GPU (or one above the budget) does not fit it.
        prefer: Which fitting settings come first (export: those that fit with memory's spread
            to spare): the chosen config's setting is picked among such settings, and among the
            configs within noise of the best, one that has such a setting comes first.
        prefer_gpu: Which configs come first among those within noise of the best, after
            ``prefer`` (export with a GPU budget: those that fit it with memory's spread to spare).
    """
    fitting = {
        key: [s for s in estimate.systems if fits(s)]
        for key, estimate in estimates.configs.items()
        if gpu_budget is None or fits_gpu_budget(estimate, gpu_budget)
    }
    fitting = {key: systems for key, systems in fitting.items() if systems}
    if not fitting:
        return None
    configs = estimates.configs

    def memory(key: AccuracyKey) -> float:
        # The memory the front ranks: host, the leanest setting that fits; GPU, the config's median
        # (a GPU study's configs all trained on the GPU; one without a figure comes last).
        if estimates.memory_axis == "host":
            return fitting[key][0].peak_host_bytes
        figure = configs[key].front_bytes(estimates.memory_axis)
        return math.inf if figure is None else figure

    best = max(fitting, key=lambda k: (configs[k].mean, -memory(k)))
    # "Within noise of the best" is not transitive: a cheap config within noise of a best measured
    # once may be beaten beyond noise by a well-replicated third that fits too, and is never picked.
    unbeaten = [k for k in fitting if not any(estimates.better(other, k) for other in fitting)]
    tied = [k for k in unbeaten if k == best or not estimates.distinguishable(k, best)]
    liked = {k: [s for s in fitting[k] if prefer is None or prefer(s)] for k in tied}
    gpu_liked = {k: prefer_gpu is None or prefer_gpu(configs[k]) for k in tied}
    # Among configs within noise of the best, one shown to fit (``prefer``, ``prefer_gpu``) comes first.
    chosen = min(
        tied,
        key=lambda k: (not liked[k], not gpu_liked[k], memory(k), fitting[k][0].epoch_seconds or math.inf),
    )

    def speed(setting: FullConfig) -> tuple[float, float]:
        return (setting.epoch_seconds or math.inf, setting.peak_host_bytes)

    preferred = liked[chosen]
    weighed = preferred or fitting[chosen]  # leanest first
    steps = speed_steps(weighed)
    system = steps[-1]
    seconds = system.epoch_seconds or math.inf
    quicker = [s for s in weighed if s.epoch_seconds is not None and s.epoch_seconds < seconds]
    faster = [s for s in fitting[chosen] if s not in weighed and shown_faster(s, system)]
    others = sorted((k for k in fitting if k != chosen), key=lambda k: -configs[k].mean)
    runner_up = best if best != chosen else (others[0] if others else None)
    return Pick(
        estimate=configs[chosen],
        system=system,
        leanest=fitting[chosen][0],
        runner_up=None if runner_up is None else configs[runner_up],
        preferred=bool(preferred),
        passed_over=min(faster, key=speed) if faster else None,
        gpu_preferred=gpu_liked[chosen],
        speed_tie=min(quicker, key=speed) if quicker else None,
        steps=steps,
    )


def export_decisions(estimates: AccuracyEstimates) -> list[AccuracyKey]:
    """The accuracy configs the rule picks at some budget, for the largest budget first.

    A budget only matters through which measured peaks fit it, with or without memory's spread to
    spare, so the budgets tried are the measured peaks themselves and where each starts to fit with
    the spread (every trial fitted the study's limit: the largest peak is the study's own answer).
    A study that ranks GPU memory tries GPU budgets the same way, at each config's highest GPU peak
    (what ``export --max-gpu-memory`` weighs) and where it starts to fit with the spread, every
    setting fitting the host limit its trainings ran under.
    """
    pick_at: Callable[[float], Pick | None]
    if estimates.memory_axis == "gpu":
        peaks = {e.peak_gpu_bytes for e in estimates.configs.values() if e.peak_gpu_bytes is not None}

        def pick_at(budget: float) -> Pick | None:
            return pick_config(
                estimates, fits_budget(math.inf), gpu_budget=budget, prefer_gpu=fits_gpu_with_spread(budget)
            )
    else:
        peaks = {s.max_peak_host_bytes for e in estimates.configs.values() for s in e.systems}

        def pick_at(budget: float) -> Pick | None:
            return pick_config(estimates, fits_budget(budget), prefer=fits_with_spread(budget))

    # Where a peak starts to fit with the spread to spare, the preferred settings change too.
    spared = {peak / (1 - MEMORY_SPREAD) * (1 + 1e-9) for peak in peaks}
    decisions: list[AccuracyKey] = []
    for budget in sorted(peaks | spared, reverse=True):
        pick = pick_at(budget)
        if pick is not None and pick.estimate.key not in decisions:
            decisions.append(pick.estimate.key)
    return decisions


def fits_gpu_budget(estimate: AccuracyEstimate, budget: float) -> bool:
    """Whether an accuracy config's highest measured GPU peak fits ``budget`` (False if unmeasured)."""
    return estimate.peak_gpu_bytes is not None and estimate.peak_gpu_bytes <= budget


def fits_gpu_with_spread(budget: float) -> Callable[[AccuracyEstimate], bool]:
    """Whether an accuracy config is shown to fit a GPU budget: its highest GPU peak below it by more
    than :data:`~search.accuracy.MEMORY_SPREAD` (a margin not yet measured for GPU peaks)."""

    def fits(estimate: AccuracyEstimate) -> bool:
        return estimate.peak_gpu_bytes is not None and estimate.peak_gpu_bytes < budget * (1 - MEMORY_SPREAD)

    return fits


def fits_with_spread(budget: float) -> Callable[[FullConfig], bool]:
    """Whether a full config is shown to fit ``budget``: its highest measured peak below it by more
    than :data:`~search.accuracy.MEMORY_SPREAD` (one config's peak repeats that far apart)."""

    def fits(system: FullConfig) -> bool:
        return system.max_peak_host_bytes < budget * (1 - MEMORY_SPREAD)

    return fits


def fits_budget(budget: float) -> Callable[[FullConfig], bool]:
    """Whether a full config fits ``budget`` as measured: every training of it, not only its median
    (replicates repeat a full config), or its probe or prediction on the whole dataset."""

    def fits(system: FullConfig) -> bool:
        return system.max_peak_host_bytes <= budget

    return fits
