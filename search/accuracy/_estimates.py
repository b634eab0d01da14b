"""What a study knows about accuracy: each accuracy config's mean over its replicates, and the noise.

Short trials are noisy: the same configuration trained with another seed moves mAP50-95 by about
±0.05 on the demo (``shared/notes/accuracy-noise.md``). So accuracy belongs to an *accuracy config*
(the knobs that change what the network sees or how it is optimised: :data:`ACCURACY_KNOBS`), not to
a trial, and it is estimated from all of that config's trainings:

* A *replicate* is one independent draw of the training's randomness
  (:func:`~search.accuracy._trainings.random_stream`): a seed and a dataloader worker count (each
  worker count is another random stream for the augmentations). Trainings that differ only in the
  cache mode see the same pixels in the same order and score the same to the digit: they are one
  replicate, not two (counting them twice would understate the noise). One exception, measured by
  ``bench/noise_bench.py``: yolov5's RAM check (``check_cache_ram``) draws 30 images with Python's
  ``random`` in the main process, so with ``workers`` 0 (augmentations drawn in the main process)
  ``cache=ram`` shifts the stream: another replicate. With workers, each worker's stream is seeded
  apart, and ``ram`` scores as ``none``.
* The noise is the pooled within-config standard deviation over every config with two replicates or
  more (one noise level for the study: configs of one short-training setup share it), with its
  degrees of freedom (each replicate beyond a config's first adds one), pooled in turn with the
  study file's prior on it when one is given (``accuracy_noise_prior``: a scaled inverse chi-square,
  its sd and degrees of freedom counting as that many earlier replicates). Until the degrees of
  freedom reach ``min_df`` (``accuracy_min_df``, 3 by default) the noise is not known, and no
  accuracy difference is a finding. Student's t covers the estimate's own uncertainty at any
  degrees of freedom only if the seed noise is normal and the same for every config; it is
  neither (bench/results/noise_truth_roles_2026-12-06.txt: per-config sds from 0.022 to 0.080 and
  one seed of a config 0.15 below its others), and from 2 degrees of freedom, two close pairs of
  replicates once put the noise at ±0.010 where 24 put it at ±0.066: the study then ranked draws.
* Two configs are *distinguishable* when their means differ by more than the two-sided interval of
  the difference and by more than ``resolution`` (an absolute floor: a study where every trial
  learned nothing has differences of 1e-6 with a noise of 1e-7). The interval holds ``confidence``
  (95% by default) for each pair (the default), or for all pairs of the study's configs at once
  with ``accuracy_family_wise: true`` (Tukey-Kramer over the configs that fit,
  :class:`~search.accuracy.NoiseRules`). A config's interval is its mean's, Student's t, or
  family-wise a comparison interval with the range's multiplier.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from search.accuracy._noise import Noise, NoiseRules
from search.accuracy._trainings import (
    AccuracyKey,
    SystemKey,
    Training,
    accuracy_key,
    key_text,
    system_key,
)
from search.study._space import DEFAULT_ROLES, KnobRoles
from search.study._spec import MemoryAxis

__all__ = [
    "AccuracyEstimate",
    "AccuracyEstimates",
    "FullConfig",
    "SystemsOf",
    "estimate_accuracy",
    "measured_systems",
]

# Every accuracy objective (mAP50, mAP50-95 and yolov5's fitness, a weighted mean of the two) lies
# in [0, 1]: an interval is cut there rather than hold values no training can reach.
ACCURACY_RANGE = (0.0, 1.0)
_LEARNED_LITTLE = 0.01
"""Below this mean accuracy everywhere (1% of the metric), a study that cannot rank says the trainings
learned next to nothing, rather than quote a noise of ±0.000."""


@dataclasses.dataclass(frozen=True)
class FullConfig:
    """One full config (accuracy config and system setting) as measured: its memory and speed.

    Attributes:
        config: The five knobs.
        trials: The trial numbers that trained it.
        peak_host_bytes: The median of their measured peaks (what the front shows).
        epoch_seconds: The median of their seconds per epoch (None if none ended an epoch).
        max_peak_host_bytes: The highest of their peaks (what must fit a budget).
        source: Where the memory and speed figures come from: ``training`` (its trainings on the
            whole dataset), ``probe`` (a probe on the whole dataset, :mod:`search.probe`) or
            ``model`` (trained on a subset only: the memory model's prediction for the whole
            dataset, and the trainings' epoch time scaled to it).
        probe: The probe's number in the storage's ``memfront-probes`` study, if probed.
    """

    config: dict[str, Any]
    trials: tuple[int, ...]
    peak_host_bytes: float
    epoch_seconds: float | None
    max_peak_host_bytes: float = 0.0
    source: str = "training"
    probe: int | None = None

    @property
    def trial(self) -> int | None:
        """The trial that stands for this config in tables: its first (None if only probed)."""
        return self.trials[0] if self.trials else None


@dataclasses.dataclass(frozen=True)
class AccuracyEstimate:
    """An accuracy config's accuracy, from all its trainings.

    Attributes:
        key: The accuracy knobs' values (``names``).
        mean: The mean over its replicates.
        low: The lower end of its confidence interval, at least 0 (-inf while the noise is unknown).
        high: The upper end, at most 1 (inf while the noise is unknown).
        replicates: How many independent trainings the mean is over.
        trials: Every trial number that trained it (cache-only repeats included).
        systems: Each system setting it was measured with, leanest first.
        values: Each replicate's accuracy (the mean of its trainings: they score alike).
        names: The accuracy knobs the key holds (the framework's :class:`KnobRoles`).
        peak_gpu_bytes: The highest GPU peak its trainings measured (None: none used CUDA). One
            figure for all its system settings: device memory is set by the accuracy knobs (batch,
            image size, AMP) and the model, while the cache, the workers and the dataset's size
            live in host memory; the highest, since that is what must fit a GPU budget.
        median_gpu_bytes: The median of those GPU peaks: what a GPU front ranks (as a host front
            ranks a setting's median peak), so that a config trained more often is not ranked on
            the highest of more draws.
    """

    key: AccuracyKey
    mean: float
    low: float
    high: float
    replicates: int
    trials: tuple[int, ...]
    systems: tuple[FullConfig, ...]
    values: tuple[float, ...] = ()
    names: tuple[str, ...] = DEFAULT_ROLES.accuracy
    peak_gpu_bytes: float | None = None
    median_gpu_bytes: float | None = None

    @property
    def leanest(self) -> FullConfig:
        """The measured system setting with the lowest peak (ties: the fastest)."""
        return self.systems[0]

    @property
    def at_range_bound(self) -> bool:
        """Whether its replicates all sit at one bound of the metric's range (every one 0: nothing
        detected yet), where seeds do not spread; they add nothing to the noise."""
        return _at_bound(self.values)

    def front_bytes(self, axis: MemoryAxis) -> float | None:
        """The memory figure the front ranks this config on (None: none on that axis, as a GPU
        figure for a config that never trained on a GPU)."""
        return self.leanest.peak_host_bytes if axis == "host" else self.median_gpu_bytes

    @property
    def knobs(self) -> dict[str, Any]:
        """The accuracy knobs as a mapping."""
        return dict(zip(self.names, self.key, strict=True))


@dataclasses.dataclass(frozen=True)
class AccuracyEstimates:
    """Every accuracy config of a study with its estimate, and the noise they share.

    ``roles`` says which knobs make an accuracy config and which a system setting (the framework's);
    keys of other configs are made with :meth:`key_of` and :meth:`system_of`. ``memory_axis`` is the
    memory the study's front ranks (its memory objective's, :attr:`search.study.StudySpec.memory_axis`).
    """

    configs: dict[AccuracyKey, AccuracyEstimate]
    noise: Noise
    roles: KnobRoles = DEFAULT_ROLES
    memory_axis: MemoryAxis = "host"

    def key_of(self, config: Mapping[str, Any]) -> AccuracyKey:
        """The accuracy config of a full config."""
        return accuracy_key(config, self.roles)

    def system_of(self, config: Mapping[str, Any]) -> SystemKey:
        """The system setting of a full config."""
        return system_key(config, self.roles)

    def text(self, key: AccuracyKey) -> str:
        """An accuracy config as people read it."""
        return key_text(key, self.roles)

    def distinguishable(self, a: AccuracyKey, b: AccuracyKey) -> bool:
        """Whether configs ``a`` and ``b`` differ in accuracy beyond noise."""
        first, second = self.configs[a], self.configs[b]
        gap = abs(first.mean - second.mean)
        return gap > self.noise.difference_threshold(first.replicates, second.replicates)

    def better(self, a: AccuracyKey, b: AccuracyKey) -> bool:
        """Whether config ``a`` is more accurate than ``b`` beyond noise."""
        return self.configs[a].mean > self.configs[b].mean and self.distinguishable(a, b)

    @property
    def signal(self) -> bool:
        """Whether any two accuracy configs differ beyond noise (False while the noise is unknown)."""
        keys = list(self.configs)
        return any(self.distinguishable(a, b) for i, a in enumerate(keys) for b in keys[i + 1 :])

    @property
    def learned_little(self) -> bool:
        """Whether every accuracy config's mean is below 1% of the metric: the trainings learned next
        to nothing, whatever their noise."""
        return bool(self.configs) and max(e.mean for e in self.configs.values()) < _LEARNED_LITTLE

    def signal_text(self) -> str | None:
        """What to tell a user when accuracy cannot rank the configs; None when it can."""
        if self.signal:
            return None
        if len(self.configs) < 2:
            return None
        if all(e.at_range_bound and e.mean == ACCURACY_RANGE[0] for e in self.configs.values()):
            return (
                "every training scored 0: trials too short to rank accuracy; raise epochs, train on more "
                "images, or fine-tune from weights"
            )
        if self.learned_little:
            best = max(e.mean for e in self.configs.values())
            best_text = f"{best:.4f}" if best >= 0.0001 else "under 0.0001"
            return (
                f"every accuracy config scored below {_LEARNED_LITTLE:g} (the best {best_text}): the "
                "trainings learned next to nothing, so accuracy is not ranked; raise epochs, train on more "
                "images, fine-tune from weights, or use faster-learning hyperparameters (hyp)"
            )
        if not self.noise.measured:
            at_zero = any(e.replicates > 1 and e.at_range_bound for e in self.configs.values())
            why = (
                "only accuracy configs that scored 0 at every seed trained twice"
                if at_zero
                else "no accuracy config trained twice"
            )
            return f"accuracy noise not measured yet ({why}): accuracy differences are not ranked"
        if not self.noise.known:
            return f"accuracy noise on {self.noise.shortfall()}: accuracy differences are not ranked yet"
        noise = self.noise
        family = f", {noise.family_text}" if noise.family_wise_applies else ""
        return (
            f"trials too short to rank accuracy: no accuracy difference exceeds the noise (±{noise.sd:.3f} "
            f"per training{family}); raise epochs, train on more images, or fine-tune from weights"
        )


SystemsOf = Callable[[AccuracyKey, list[Training]], tuple[FullConfig, ...]]
"""Each full config of an accuracy config that fits, with its memory and speed, leanest first."""


def estimate_accuracy(
    trainings: Iterable[Training],
    *,
    rules: NoiseRules | None = None,
    systems_of: SystemsOf | None = None,
    roles: KnobRoles = DEFAULT_ROLES,
    memory: MemoryAxis = "host",
) -> AccuracyEstimates:
    """Groups trainings into accuracy configs and replicates, and estimates each config's accuracy.

    Args:
        trainings: Feasible completed trainings (infeasible and failed ones have no accuracy).
        rules: How differences are judged (the study file's ``accuracy_*`` keys; defaults: 95%
            confidence, resolution 0.005, 3 degrees of freedom, no prior).
        systems_of: Where each accuracy config's full configs and their figures come from
            (default: its trainings' own measurements; :class:`search.probe.SystemFigures` adds
            probes and whole-dataset predictions). A config left with none that fits is measured
            (its replicates count toward the noise) but not in ``configs``.
        roles: Which knobs make an accuracy config (the framework's; yolov5's by default).
        memory: The memory the study's front ranks (:attr:`search.study.StudySpec.memory_axis`).
    """
    by_config: dict[AccuracyKey, list[Training]] = defaultdict(list)
    for training in trainings:
        by_config[accuracy_key(training.config, roles)].append(training)
    replicates: dict[AccuracyKey, list[float]] = {}
    for key, group in by_config.items():
        draws: dict[tuple[Any, ...], list[float]] = defaultdict(list)
        for training in group:
            draws[training.replicate_key].append(training.accuracy)
        replicates[key] = [statistics.fmean(values) for values in draws.values()]
    # Replicates that all sit at a bound of the metric's range (every one 0: nothing detected yet)
    # say nothing of the seed noise of a config that learned: their zero spread would shrink the
    # pooled noise until single trainings ranked.
    pooled = [vs for vs in replicates.values() if not _at_bound(vs)]
    squares = sum(sum((v - statistics.fmean(vs)) ** 2 for v in vs) for vs in pooled)
    df = sum(len(vs) - 1 for vs in pooled)
    fitting = {}
    for key, group in by_config.items():
        systems = _systems(group, roles) if systems_of is None else systems_of(key, group)
        if systems:
            fitting[key] = systems
    noise = (rules or NoiseRules()).noise(squares, df, family=len(fitting))
    configs = {}
    for key, systems in fitting.items():
        group = by_config[key]
        values = replicates[key]
        gpu_peaks = [t.peak_gpu_bytes for t in group if t.peak_gpu_bytes is not None]
        mean = statistics.fmean(values)
        half = noise.half_width(len(values))
        low, high = (mean - half, mean + half) if math.isinf(half) else _within_range(mean, half)
        configs[key] = AccuracyEstimate(
            key=key,
            mean=mean,
            low=low,
            high=high,
            replicates=len(values),
            trials=tuple(sorted(t.number for t in group)),
            systems=systems,
            values=tuple(values),
            names=roles.accuracy,
            peak_gpu_bytes=max(gpu_peaks, default=None),
            median_gpu_bytes=statistics.median(gpu_peaks) if gpu_peaks else None,
        )
    return AccuracyEstimates(configs=configs, noise=noise, roles=roles, memory_axis=memory)


def _at_bound(values: Iterable[float]) -> bool:
    """Whether every value is the same bound of the metric's range."""
    distinct = set(values)
    return len(distinct) == 1 and distinct <= set(ACCURACY_RANGE)


def _within_range(mean: float, half: float) -> tuple[float, float]:
    bottom, top = ACCURACY_RANGE
    return max(bottom, mean - half), min(top, mean + half)


def measured_systems(group: list[Training], roles: KnobRoles = DEFAULT_ROLES) -> tuple[FullConfig, ...]:
    """The full configs of an accuracy config as its trainings measured them, leanest first."""
    return _systems(group, roles)


def _systems(group: list[Training], roles: KnobRoles) -> tuple[FullConfig, ...]:
    by_system: dict[SystemKey, list[Training]] = defaultdict(list)
    for training in group:
        by_system[system_key(training.config, roles)].append(training)
    systems = []
    for runs in by_system.values():
        runs.sort(key=lambda t: t.number)
        speeds = [t.epoch_seconds for t in runs if t.epoch_seconds is not None]
        systems.append(
            FullConfig(
                config=dict(runs[0].config),
                trials=tuple(t.number for t in runs),
                peak_host_bytes=statistics.median(t.peak_host_bytes for t in runs),
                epoch_seconds=statistics.median(speeds) if speeds else None,
                max_peak_host_bytes=max(t.peak_host_bytes for t in runs),
            )
        )
    return tuple(sorted(systems, key=lambda s: (s.peak_host_bytes, s.epoch_seconds or math.inf)))
