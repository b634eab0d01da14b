"""Each full config's memory and epoch time on the whole dataset, from the best source there is.

One front over all five knobs: accuracy comes from the accuracy config's replicates
(:mod:`search.accuracy`), memory and speed from the full config itself, on the whole dataset:

1. a training on the whole dataset measured it (its median; the trainings repeat it exactly);
2. else a probe measured it (:mod:`search.probe`), on the whole dataset by construction. Its epoch
   time is the probe's projection of the epoch's training plus the validation pass the accuracy
   config's own trainings measured (median), where they did: a probe validates a barely trained
   model, whose pass took 6-7 s against 26-32 s for one epoch's trained model on the probe
   benchmark (fewer candidate boxes through NMS and the metrics);
3. else, when the trainings used a subset (``train_images``), the memory model predicts the whole
   dataset's peak (with the error it states) and the trainings' epoch time is theirs with its
   training part scaled by the ratio of training images (the trainings validate on the whole
   validation set already).

A full config whose probe went over its memory limit, or whose prediction exceeds the limit, does
not fit and is left out: it is not a point of the front, and export never picks it.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

from search.accuracy._estimates import FullConfig
from search.accuracy._trainings import AccuracyKey, Training, accuracy_key, system_key
from search.model._predict import DatasetStats, MemoryModel, features
from search.model._preflight import record_features
from search.probe._store import StoredProbe
from search.study._space import DEFAULT_ROLES, KnobRoles

__all__ = ["SystemFigures", "in_space", "probe_rows", "study_figures", "whole_dataset_predictor"]


def whole_dataset_predictor(
    model: MemoryModel, stats: DatasetStats, *, framework: str, device: str
) -> Callable[[Mapping[str, Any]], float]:
    """The memory model's prediction of a full config's peak on the whole dataset."""

    def predict(knobs: Mapping[str, Any]) -> float:
        chosen = {k: knobs[k] for k in ("batch", "imgsz", "cache", "workers")}
        row = features(stats=stats, train_images=None, framework=framework, device=device, **chosen)
        return model.predict(row).total_bytes

    return predict


def probe_rows(
    probes: Mapping[tuple[Any, ...], StoredProbe], stats: DatasetStats
) -> list[tuple[dict[str, float], float]]:
    """The memory model's (features, peak) rows of the probes that ran to their end."""
    return [
        (record_features(p.result.record, stats), float(p.result.peak_host_bytes))
        for p in probes.values()
        if p.result.ok and p.result.peak_host_bytes
    ]


class SystemFigures:
    """Builds the full configs of each accuracy config (an ``estimate_accuracy(systems_of=...)``).

    Args:
        probes: The storage's probes of this dataset and machine, by knobs.
        limit_bytes: The study's memory limit.
        predict_full: The memory model's whole-dataset prediction of a config's peak (None: no model).
        subset_scale: Whole-dataset training images over those the trainings used, when the study
            trains on a subset (None: the trainings saw the whole dataset).
        roles: Which knobs make an accuracy config (the framework's).
    """

    def __init__(
        self,
        *,
        probes: Mapping[tuple[Any, ...], StoredProbe],
        limit_bytes: int,
        predict_full: Callable[[Mapping[str, Any]], float] | None = None,
        subset_scale: float | None = None,
        roles: KnobRoles = DEFAULT_ROLES,
    ) -> None:
        self.roles = roles
        self.limit_bytes = limit_bytes
        self.predict_full = predict_full
        self.subset_scale = subset_scale
        self._probes: dict[AccuracyKey, list[StoredProbe]] = defaultdict(list)
        for probe in probes.values():
            self._probes[accuracy_key(probe.result.knobs, roles)].append(probe)

    def probed(self, key: AccuracyKey) -> list[StoredProbe]:
        """The probes of an accuracy config's full configs."""
        return list(self._probes.get(key, []))

    def __call__(self, key: AccuracyKey, group: list[Training]) -> tuple[FullConfig, ...]:
        by_system: dict[tuple[Any, ...], list[Training]] = defaultdict(list)
        for training in group:
            by_system[system_key(training.config, self.roles)].append(training)
        probes = {system_key(p.result.knobs, self.roles): p for p in self._probes.get(key, [])}
        passes = [t.validation_seconds for t in group if t.validation_seconds is not None]
        validation = statistics.median(passes) if passes else None
        systems = []
        for system in dict.fromkeys([*by_system, *probes]):
            runs = sorted(by_system.get(system, []), key=lambda t: t.number)
            figure = self._figure(runs, probes.get(system), validation)
            if figure is not None:
                systems.append(figure)
        return tuple(sorted(systems, key=lambda s: (s.peak_host_bytes, s.epoch_seconds or math.inf)))

    def _figure(
        self, runs: list[Training], probe: StoredProbe | None, validation: float | None
    ) -> FullConfig | None:
        trials = tuple(t.number for t in runs)
        # A whole-dataset run does all a subset's run does: where the setting's own subset trainings
        # peaked higher than its whole-dataset figure, their peak is what must fit a budget (the
        # front still ranks the whole-dataset figure, which orders settings alike).
        subset_peak = max((t.peak_host_bytes for t in runs), default=0.0)
        if probe is not None and not probe.result.ok:
            if probe.settles(self.limit_bytes):
                return None  # over a limit no higher than this study's, on the whole dataset
            probe = None  # stopped under a lower limit: says nothing about this one
        if runs and self.subset_scale is None:
            speeds = [t.epoch_seconds for t in runs if t.epoch_seconds is not None]
            return FullConfig(
                config=dict(runs[0].config), trials=trials,
                peak_host_bytes=statistics.median(t.peak_host_bytes for t in runs),
                epoch_seconds=statistics.median(speeds) if speeds else None,
                max_peak_host_bytes=max(t.peak_host_bytes for t in runs),
                probe=None if probe is None else probe.number,
            )  # fmt: skip
        if probe is not None:
            result = probe.result
            peak = float(result.peak_host_bytes or 0)
            if peak > self.limit_bytes:
                return None  # probed under a higher limit (another study): does not fit this one
            config = dict(runs[0].config) if runs else dict(result.knobs)
            epoch = result.projected_epoch_seconds
            if validation is not None and result.projected_train_seconds is not None:
                epoch = result.projected_train_seconds + validation  # a trained model's pass (above)
            return FullConfig(
                config=config, trials=trials, peak_host_bytes=peak, epoch_seconds=epoch,
                max_peak_host_bytes=max(peak, subset_peak), source="probe", probe=probe.number,
            )  # fmt: skip
        if not runs or self.predict_full is None or self.subset_scale is None:
            return None
        predicted = self.predict_full(runs[0].config)
        if predicted > self.limit_bytes:
            return None
        speeds = [_scaled_epoch(t, self.subset_scale) for t in runs if t.epoch_seconds is not None]
        return FullConfig(
            config=dict(runs[0].config), trials=trials, peak_host_bytes=predicted,
            epoch_seconds=statistics.median(speeds) if speeds else None,
            max_peak_host_bytes=max(predicted, subset_peak), source="model",
        )  # fmt: skip


def _scaled_epoch(training: Training, scale: float) -> float:
    """A subset training's epoch seconds on the whole dataset: its training part times ``scale``
    (its validation pass ran on the whole validation set already)."""
    epoch = float(training.epoch_seconds or 0.0)
    validation = min(training.validation_seconds or 0.0, epoch)
    return (epoch - validation) * scale + validation


def in_space(
    probes: Mapping[tuple[Any, ...], StoredProbe], space: Mapping[str, list[Any]]
) -> dict[tuple[Any, ...], StoredProbe]:
    """The probes of full configs a study's space reaches (``space``: each knob's values).

    Probes of other studies on the same dataset and machine count there too.
    """
    return {
        key: probe
        for key, probe in probes.items()
        if all(probe.result.knobs[knob] in values for knob, values in space.items())
    }


def study_figures(
    *,
    probes: Mapping[tuple[Any, ...], StoredProbe],
    stats: DatasetStats,
    model: MemoryModel | None,
    limit_bytes: int,
    train_images: int | None,
    framework: str,
    device: str,
    roles: KnobRoles = DEFAULT_ROLES,
) -> SystemFigures:
    """The whole-dataset figures of a study: what its front, export and planner all rank on.

    Args:
        probes: The study's probes (:func:`in_space`).
        stats: The whole dataset's image sizes.
        model: The study's memory model (None: no whole-dataset predictions).
        limit_bytes: The study's memory limit.
        train_images: The study's ``train_images`` (the trainings' subset), if any.
        framework: The study's framework.
        device: The study's device.
        roles: Which knobs make an accuracy config.
    """
    full_images = len(stats.train_sizes)
    subset = train_images is not None and 0 < train_images < full_images
    predict_full = (
        None if model is None else whole_dataset_predictor(model, stats, framework=framework, device=device)
    )
    return SystemFigures(
        probes=probes, limit_bytes=limit_bytes, predict_full=predict_full,
        subset_scale=full_images / train_images if subset and train_images else None, roles=roles,
    )  # fmt: skip
