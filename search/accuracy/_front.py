"""The noise-aware front of accuracy against peak host memory, and its hypervolume.

A point of the front is an accuracy config at its leanest measured system setting (the least memory
that config was seen to train in). A config is dropped from the front only when another one is more
accurate *beyond noise* and needs no more memory: configs whose accuracy differences are noise all
stay, and each is marked with the cheaper front point it is equivalent to within noise (paying the
extra memory for it buys no accuracy that was shown).
"""

from __future__ import annotations

import dataclasses
import math

from search.accuracy._estimates import AccuracyEstimate, AccuracyEstimates, AccuracyKey, FullConfig

__all__ = ["FrontPoint", "FullFrontPoint", "front_hypervolume", "full_front", "noise_front"]


@dataclasses.dataclass(frozen=True)
class FrontPoint:
    """One point of the front.

    Attributes:
        estimate: The accuracy config's estimate (mean, interval, replicates, systems).
        equivalent_to: The cheapest front point whose accuracy is not distinguishable from this
            one's and that needs less memory (None: this point is a step up shown beyond noise, or the
            leanest).
    """

    estimate: AccuracyEstimate
    equivalent_to: AccuracyKey | None

    @property
    def peak_host_bytes(self) -> float:
        """The peak of the config's leanest measured system setting."""
        return self.estimate.leanest.peak_host_bytes


def noise_front(estimates: AccuracyEstimates) -> list[FrontPoint]:
    """The configs no other one beats beyond noise without needing more memory, least memory first."""
    configs = list(estimates.configs.values())
    kept = [
        config
        for config in configs
        if not any(
            other.key != config.key
            and other.leanest.peak_host_bytes <= config.leanest.peak_host_bytes
            and estimates.better(other.key, config.key)
            for other in configs
        )
    ]
    kept.sort(key=lambda c: (c.leanest.peak_host_bytes, -c.mean))
    points = []
    for index, config in enumerate(kept):
        cheaper = [
            other.key
            for other in kept[:index]
            if other.leanest.peak_host_bytes < config.leanest.peak_host_bytes
            and not estimates.distinguishable(other.key, config.key)
        ]
        points.append(FrontPoint(estimate=config, equivalent_to=cheaper[0] if cheaper else None))
    return points


@dataclasses.dataclass(frozen=True)
class FullFrontPoint:
    """One full config (accuracy config and system setting) of the front over all five knobs."""

    estimate: AccuracyEstimate
    system: FullConfig


def full_front(estimates: AccuracyEstimates, *, speed: bool = True) -> list[FullFrontPoint]:
    """The full configs no other one beats: accuracy (beyond noise), memory and, with ``speed``, epoch time.

    A full config is dropped when another needs no more memory, is no slower (with ``speed``), and
    is either of the same accuracy config (the same estimate: system knobs do not change accuracy)
    and cheaper or faster, or more accurate beyond noise. So the system settings of one accuracy
    config that trade memory for speed all stay: what workers and the RAM cache buy is visible.
    Least memory first.
    """

    def time_of(system: FullConfig) -> float:
        return system.epoch_seconds if system.epoch_seconds is not None else math.inf

    pairs = [FullFrontPoint(e, s) for e in estimates.configs.values() for s in e.systems]

    def beats(a: FullFrontPoint, b: FullFrontPoint) -> bool:
        no_worse = a.system.peak_host_bytes <= b.system.peak_host_bytes and (
            not speed or time_of(a.system) <= time_of(b.system)
        )
        if not no_worse or a is b:
            return False
        if a.estimate.key == b.estimate.key:
            return a.system.peak_host_bytes < b.system.peak_host_bytes or (
                speed and time_of(a.system) < time_of(b.system)
            )
        return estimates.better(a.estimate.key, b.estimate.key)

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
