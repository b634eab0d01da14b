"""The noise-aware front of accuracy against peak memory, and its hypervolume.

A point of the front is an accuracy config at its leanest measured system setting (the least host
memory that config was seen to train in). A study whose memory objective is ``peak_gpu`` ranks GPU
memory instead (:attr:`AccuracyEstimates.memory_axis`): a config's median GPU peak over its
trainings, one figure for all its system settings (device memory is set by the accuracy knobs and
the model; the cache, the workers and the dataset's size live in host memory).

A config is dropped from the front only when another one is more accurate *beyond noise* and needs
no more memory: configs whose accuracy differences are noise all stay, and each is marked with the
cheaper front point it is equivalent to within noise (paying the extra memory for it buys no
accuracy that was shown).

Memory differences get the same treatment: "needs no more memory" must be shown too
(:func:`needs_no_more_memory`, :func:`needs_no_more_gpu_memory`), either by construction (the same
setting with a batch and image size no larger) or by figures apart by more than memory's own spread
(:data:`MEMORY_SPREAD`). A config that a more accurate one beats only by a memory difference below
that spread stays, marked (``memory_tie``): the figures cannot tell which of the two needs less.
Speed differences too: a setting is faster only when its epoch time is below the other's by more
than the epoch time's own spread (:func:`shown_faster`, :data:`SPEED_SPREAD`), and of one accuracy
config's settings, those that buy speed with memory are :func:`speed_steps` (export picks the last).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence

from search.accuracy._estimates import AccuracyEstimate, AccuracyEstimates, FullConfig
from search.accuracy._trainings import AccuracyKey

__all__ = [
    "MEMORY_SPREAD",
    "SPEED_SPREAD",
    "FrontPoint",
    "FullFrontPoint",
    "front_hypervolume",
    "full_front",
    "needs_no_more_gpu_memory",
    "needs_no_more_memory",
    "noise_front",
    "shown_faster",
    "speed_repeats_apart",
    "speed_steps",
]

MEMORY_SPREAD = 0.04
"""How far apart, relative to the larger, two peak host memory figures must be for the difference to
count. One full config's peak repeats within 2-4% over seeds (``shared/notes/accuracy-noise.md``),
a probe reads within 3% of a longer run of the same config (*Probes* in the README's benchmarks),
and the memory model's median error on the whole dataset is about 2%. GPU peaks get the same
margin: how far the allocator's peak repeats over seeds (cuDNN may pick other algorithms, with
other workspaces) has not been measured yet."""

SPEED_SPREAD = 0.2
"""How far apart, relative to the slower, two epoch times must be for one setting to count as
faster. One full config's seconds per epoch over repeats on this 2-core machine (some runs sharing
the CPU with other work, as a user's may), ``bench/speed_spread.py``: 15-epoch trainings of 256
images, the median pair of repeats 5% apart, 9 pairs in 10 within 21%, and the widest pair (a
training that shared the CPU) 11 times apart (100 pairs); first epochs on 3000 images (30-50 s),
the median pair 6% apart, the widest 20% (20 pairs). So the margin is about the 90th percentile of
what one setting repeats within, not a bound: 1 same-setting pair in 10 still reads beyond it. A
probe's projected training reads 0.95-1.10 of the real run's, inside the margin."""

_GROWS_WITH = ("batch", "imgsz")
"""The knobs memory grows with, all else equal (activations scale with both)."""


def needs_no_more_memory(a: FullConfig, b: FullConfig, *, spread: float = MEMORY_SPREAD) -> bool:
    """Whether full config ``a`` is shown to need no more peak host memory than ``b``.

    Known by construction when the two differ only in a batch or image size that is no larger in
    ``a`` (whatever their figures say: a smaller batch cannot need more); known not to when it is
    ``b`` that is so built. Otherwise their figures must be apart by more than ``spread`` of the
    larger one: a smaller difference is within what one config's peak repeats within.
    """
    if _built_no_larger(a.config, b.config):
        return True
    if _built_no_larger(b.config, a.config):
        return False
    return a.peak_host_bytes < b.peak_host_bytes * (1 - spread)


def shown_faster(a: FullConfig, b: FullConfig, *, spread: float = SPEED_SPREAD) -> bool:
    """Whether full config ``a`` is shown to train faster than ``b``: its seconds per epoch below
    ``b``'s by more than ``spread`` of them (a config that ended no epoch is the slowest)."""
    if a.epoch_seconds is None:
        return False
    return b.epoch_seconds is None or a.epoch_seconds < b.epoch_seconds * (1 - spread)


def speed_repeats_apart(
    runs: Iterable[Sequence[tuple[int, float]]], *, spread: float = SPEED_SPREAD
) -> list[tuple[tuple[int, float], tuple[int, float]]]:
    """The full configs whose own trainings' epoch times are apart by more than ``spread``.

    Args:
        runs: For each full config, its trainings as (trial number, seconds per epoch).
        spread: The margin :func:`shown_faster` ranks by.

    Returns:
        For each such config, its fastest and its slowest training, the widest apart first. One
        setting's repeats beyond the margin say the machine's speed moved (it was shared, or busy)
        while they ran: rankings by speed rest on figures like theirs.
    """
    apart = []
    for trainings in runs:
        timed = sorted((seconds, number) for number, seconds in trainings if seconds and seconds > 0)
        if len(timed) > 1 and timed[0][0] < timed[-1][0] * (1 - spread):
            apart.append(((timed[0][1], timed[0][0]), (timed[-1][1], timed[-1][0])))
    return sorted(apart, key=lambda pair: pair[0][1] / pair[1][1])


def speed_steps(systems: Sequence[FullConfig]) -> tuple[FullConfig, ...]:
    """The settings of one accuracy config that each buy speed with memory, leanest first.

    From the leanest of ``systems`` (given leanest first) up, a setting is a step when it is shown
    faster (:func:`shown_faster`) than the step before: each step's extra memory buys a lead beyond
    the epoch time's spread, and no setting is shown faster than the last step. Export picks the
    last step; the five-knob front keeps every step.
    """
    if not systems:
        return ()
    steps = [systems[0]]
    for setting in systems[1:]:
        if shown_faster(setting, steps[-1]):
            steps.append(setting)
    return tuple(steps)


def needs_no_more_gpu_memory(
    a: AccuracyEstimate, b: AccuracyEstimate, *, spread: float = MEMORY_SPREAD
) -> bool:
    """Whether accuracy config ``a`` is shown to need no more GPU memory than ``b``: the rule of
    :func:`needs_no_more_memory` on the accuracy knobs and the configs' median GPU peaks."""
    if _built_no_larger(a.knobs, b.knobs):
        return True
    if _built_no_larger(b.knobs, a.knobs) or a.median_gpu_bytes is None or b.median_gpu_bytes is None:
        return False
    return a.median_gpu_bytes < b.median_gpu_bytes * (1 - spread)


def _built_no_larger(a: dict[str, object], b: dict[str, object]) -> bool:
    """Whether ``a`` equals ``b`` but for batch and image size, and those are no larger."""
    if any(a.get(k) != b.get(k) for k in a.keys() | b.keys() if k not in _GROWS_WITH):
        return False
    return all(_number(a.get(k)) <= _number(b.get(k)) for k in _GROWS_WITH)


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else math.nan


@dataclasses.dataclass(frozen=True)
class FrontPoint:
    """One point of the front.

    Attributes:
        estimate: The accuracy config's estimate (mean, interval, replicates, systems).
        memory_bytes: The memory figure it is ranked on (:meth:`AccuracyEstimate.front_bytes`).
        equivalent_to: The cheapest front point whose accuracy is not distinguishable from this
            one's and that needs less memory (None: this point is a step up shown beyond noise, or the
            leanest).
        memory_tie: A front point more accurate beyond noise whose memory figure is no higher than
            this one's, but that is not shown to need less (:func:`needs_no_more_memory`: the
            figures within :data:`MEMORY_SPREAD`, or this config built leaner): this point stays
            because it may need less (None: no such point).
    """

    estimate: AccuracyEstimate
    memory_bytes: float
    equivalent_to: AccuracyKey | None
    memory_tie: AccuracyKey | None = None

    @property
    def peak_host_bytes(self) -> float:
        """The peak of the config's leanest measured system setting."""
        return self.estimate.leanest.peak_host_bytes


def noise_front(estimates: AccuracyEstimates) -> list[FrontPoint]:
    """The configs no other one beats beyond noise without needing more memory, least memory first.

    The memory is the study's (``estimates.memory_axis``); on GPU memory, a config without a GPU
    figure (it never trained on a GPU) is not on the front.
    """
    axis = estimates.memory_axis
    figures = {key: config.front_bytes(axis) for key, config in estimates.configs.items()}
    memory = {key: figure for key, figure in figures.items() if figure is not None}
    configs = [config for config in estimates.configs.values() if config.key in memory]

    def leaner(a: AccuracyEstimate, b: AccuracyEstimate) -> bool:
        if axis == "gpu":
            return needs_no_more_gpu_memory(a, b)
        return needs_no_more_memory(a.leanest, b.leanest)

    def beats(other: AccuracyEstimate, config: AccuracyEstimate) -> bool:
        return other.key != config.key and leaner(other, config) and estimates.better(other.key, config.key)

    def bytes_of(config: AccuracyEstimate) -> float:
        return memory[config.key]

    kept = [config for config in configs if not any(beats(other, config) for other in configs)]
    kept.sort(key=lambda c: (bytes_of(c), -c.mean))
    points = []
    for index, config in enumerate(kept):
        cheaper = [
            other.key
            for other in kept[:index]
            if bytes_of(other) < bytes_of(config) and not estimates.distinguishable(other.key, config.key)
        ]
        tied = [
            other.key
            for other in kept[:index]
            if bytes_of(other) <= bytes_of(config) and estimates.better(other.key, config.key)
        ]
        points.append(
            FrontPoint(
                estimate=config,
                memory_bytes=bytes_of(config),
                equivalent_to=cheaper[0] if cheaper else None,
                memory_tie=tied[0] if tied else None,
            )
        )
    return points


@dataclasses.dataclass(frozen=True)
class FullFrontPoint:
    """One full config (accuracy config and system setting) of the front over all five knobs."""

    estimate: AccuracyEstimate
    system: FullConfig


def full_front(estimates: AccuracyEstimates, *, speed: bool = True) -> list[FullFrontPoint]:
    """The full configs no other one beats: accuracy (beyond noise), memory and, with ``speed``, epoch time.

    Of one accuracy config (its system knobs do not change accuracy), the settings that buy speed
    with memory stay (:func:`speed_steps`: each shown faster than the leaner step before it, the
    chain export walks), or without ``speed`` its leanest. Such a setting is then dropped when a
    setting of another config is not shown slower (with ``speed``; :func:`shown_faster`), is more
    accurate beyond noise and is shown to need no more memory (:func:`needs_no_more_memory`). So
    what workers and the RAM cache buy is visible, and a lead within the spread is not. Least
    memory first.
    """

    def time_of(system: FullConfig) -> float:
        return system.epoch_seconds if system.epoch_seconds is not None else math.inf

    pairs = [
        FullFrontPoint(e, s)
        for e in estimates.configs.values()
        for s in (speed_steps(e.systems) if speed else e.systems[:1])
    ]

    def beats(a: FullFrontPoint, b: FullFrontPoint) -> bool:
        if a.estimate.key == b.estimate.key or (speed and shown_faster(b.system, a.system)):
            return False
        return needs_no_more_memory(a.system, b.system) and estimates.better(a.estimate.key, b.estimate.key)

    kept = [p for p in pairs if not any(beats(other, p) for other in pairs)]
    return sorted(kept, key=lambda p: (p.system.peak_host_bytes, time_of(p.system), -p.estimate.mean))


def front_hypervolume(points: list[tuple[float, float]], *, memory_limit: int) -> float:
    """Area dominated by (peak bytes, accuracy) points, in accuracy x GiB under the memory limit.

    The reference point is (memory at the limit, accuracy 0): a front that reaches higher accuracy
    with less memory covers more. Dominated points add nothing, so any superset of the front gives
    the front's own hypervolume.
    """
    ordered = sorted((p, a) for p, a in points if not math.isnan(a) and p < memory_limit)
    if not ordered:
        return 0.0
    area, best = 0.0, 0.0
    edges = [p for p, _ in ordered[1:]] + [float(memory_limit)]
    for (peak, acc), next_peak in zip(ordered, edges, strict=True):
        best = max(best, acc)
        area += best * max(0.0, min(next_peak, memory_limit) - peak)
    return area / 1024**3
