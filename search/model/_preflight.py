"""Pre-flight: skip a configuration the memory model says cannot fit, before training it.

The model (:mod:`search.model._predict`) starts from the best there is before fitting
(:func:`search.model._start.starting_model`: the machine's calibration when there is one, else priors
anchored on its measured framework footprint) and is refitted after every measured trial of the
study. A configuration is skipped only when its predicted peak exceeds the limit by more than a
margin, and only once the model has seen enough measured runs: trials near the limit still run and
are measured.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

import optuna

from search.frameworks import DEFAULT_FRAMEWORK
from search.model._calibration import Calibration
from search.model._predict import DatasetStats, MemoryModel, Prediction, features
from search.model._start import load_starting_model, starting_model
from search.study._stored import read_trials
from search.trial._config import TrialConfig, TrialLimits
from search.trial._record import TrialRecord

__all__ = [
    "CALIBRATION_WEIGHT",
    "Preflight",
    "combined_fit",
    "full_size_predictions",
    "record_features",
    "study_memory_model",
    "study_rows",
]


def record_features(record: dict[str, Any], stats: DatasetStats) -> dict[str, float]:
    """The model's features of a measured trial, from its stored record."""
    requested, used = record["requested"], record.get("used") or {}
    return features(
        batch=int(requested["batch"]),
        imgsz=int(used.get("imgsz") or requested["imgsz"]),
        cache=str(used.get("cache") or requested["cache"]),
        workers=int(requested["workers"]),
        stats=stats,
        train_images=used.get("train_images") or requested.get("train_images"),
        framework=str(requested.get("framework") or DEFAULT_FRAMEWORK),
        device=str(requested.get("device") or "cpu"),
    )


def study_rows(
    trials: Iterable[optuna.trial.FrozenTrial], stats: DatasetStats
) -> list[tuple[dict[str, float], float]]:
    """(features, measured peak) of every trial that trained to the end (a stopped trial's peak is
    only a lower bound, so it is left out)."""
    rows = []
    for trial in read_trials(trials):
        record = trial.record
        if record and trial.status == "ok" and record.get("peak_host_bytes") and trial.duplicate_of is None:
            rows.append((record_features(record, stats), float(record["peak_host_bytes"])))
    return rows


class Preflight:
    """The study's memory model and the decision to skip.

    Args:
        stats: Pixel sizes of the study's dataset.
        limit_bytes: The per-trial host memory limit.
        margin: Skip only predictions above ``limit * (1 + margin)``.
        calibration: The machine's calibration, if any (its rows join the fit).
        min_samples: Measured runs of the study needed before any configuration is skipped.
        device: The study's device: without a calibration, its framework footprint anchors the
            priors (measured if not cached).
        framework: The study's framework.
        footprint_bytes: The footprint the study's run measured (default: the machine's cached one).
    """

    def __init__(
        self,
        *,
        stats: DatasetStats,
        limit_bytes: int,
        margin: float,
        calibration: Calibration | None = None,
        min_samples: int = 3,
        device: str = "cpu",
        framework: str = DEFAULT_FRAMEWORK,
        footprint_bytes: int | None = None,
    ) -> None:
        self.stats = stats
        self.device = device
        self.framework = framework
        self.limit_bytes = limit_bytes
        self.margin = margin
        self.min_samples = min_samples
        self.start = starting_model(
            calibration=calibration, device=device, framework=framework, footprint_bytes=footprint_bytes
        )
        self._base_rows = self.start.calibration_rows
        self._rows: list[tuple[dict[str, float], float]] = []
        self._walls: list[float] = []
        self._model: MemoryModel | None = None

    def load(
        self,
        trials: Iterable[optuna.trial.FrozenTrial],
        extra_rows: list[tuple[dict[str, float], float]] | None = None,
    ) -> None:
        """Learns from the study's measured trials, whichever worker ran them (replaces what it knew).

        Args:
            trials: The study's trials.
            extra_rows: Other measurements of this dataset and machine (the probes' rows).
        """
        trials = list(trials)
        rows = study_rows(trials, self.stats) + list(extra_rows or [])
        if len(rows) != len(self._rows):
            self._model = None
        self._rows = rows
        self._walls = [
            t.wall_seconds for t in read_trials(trials) if t.status == "ok" and t.wall_seconds is not None
        ]

    def observe(self, record: TrialRecord) -> None:
        """Learns from a trial that just ran."""
        if record.status == "ok" and record.peak_host_bytes:
            self._rows.append((record_features(record.to_dict(), self.stats), float(record.peak_host_bytes)))
            self._walls.append(record.wall_seconds)
            self._model = None

    @property
    def model(self) -> MemoryModel:
        """The model fitted on calibration and study rows so far (the starting model before any)."""
        if self._model is None:
            self._model = combined_fit(self._base_rows, self._rows, base=self.start.model)
        return self._model

    def predict(self, knobs: dict[str, Any], *, train_images: int | None) -> Prediction:
        """Predicted peak of a configuration on ``train_images`` training images (None: all)."""
        if train_images is not None:
            train_images = min(train_images, len(self.stats.train_sizes))
        return self.model.predict(
            features(
                stats=self.stats,
                train_images=train_images,
                framework=self.framework,
                device=self.device,
                **{k: knobs[k] for k in ("batch", "imgsz", "cache", "workers")},
            )
        )

    def should_skip(self, prediction: Prediction) -> bool:
        """Whether to record the configuration as infeasible without training it."""
        # The study's own runs, not the calibration's: a calibration measured in other conditions
        # (another session's page cache) must not skip anything on its own.
        trusted = len(self._rows) >= self.min_samples
        return trusted and prediction.total_bytes > self.limit_bytes * (1 + self.margin)

    def seconds_saved(self, skipped: int) -> float:
        """``skipped`` configurations times the median wall time of a measured one."""
        return skipped * (statistics.median(self._walls) if self._walls else 0.0)

    def skip_record(self, config: TrialConfig, limits: TrialLimits, prediction: Prediction) -> TrialRecord:
        """The record of a configuration skipped by pre-flight: infeasible by prediction, not trained."""
        return TrialRecord(
            status="predicted",
            map50=None,
            map50_95=None,
            fitness=None,
            peak_host_bytes=int(prediction.total_bytes),
            peak_gpu_bytes=None,
            epoch_seconds=None,
            wall_seconds=0.0,
            phases={},
            requested=config.model_dump(),
            used={},
            limits=limits.model_dump(),
            epochs=[],
            memory={"prediction": prediction.to_dict(), "model": self.model.to_dict()},
            gpu={},
            exit_code=None,
            error=(
                f"not trained: predicted peak {prediction.total_bytes / 1024**3:.2f} GiB exceeds the limit "
                f"{self.limit_bytes / 1024**3:.2f} GiB by more than {100 * self.margin:.0f}%"
            ),
        )


def full_size_predictions(
    frame: Any,
    model: MemoryModel,
    stats: DatasetStats,
    *,
    framework: str = DEFAULT_FRAMEWORK,
    device: str = "cpu",
) -> list[float | None]:
    """Predicted peak of each trial's configuration trained on the whole dataset (None if unknown)."""
    predicted: list[float | None] = []
    for _, row in frame.iterrows():
        if any(row[k] is None or row[k] != row[k] for k in ("batch", "imgsz", "cache", "workers")):
            predicted.append(None)
            continue
        knobs: dict[str, Any] = {
            "batch": int(row["batch"]),
            "imgsz": int(row["imgsz"]),
            "cache": str(row["cache"]),
            "workers": int(row["workers"]),
        }
        chosen = features(stats=stats, train_images=None, framework=framework, device=device, **knobs)
        predicted.append(model.predict(chosen).total_bytes)
    return predicted


def study_memory_model(
    trials: Iterable[optuna.trial.FrozenTrial],
    stats: DatasetStats,
    *,
    model_name: str,
    device: str,
    framework: str = DEFAULT_FRAMEWORK,
    extra_rows: list[tuple[dict[str, float], float]] | None = None,
    footprint_bytes: int | None = None,
    measure: bool = True,
) -> MemoryModel:
    """The memory model fitted on the study's measured trials (and ``extra_rows``: its probes), from
    :func:`load_starting_model` (``footprint_bytes`` and ``measure`` are its)."""
    start = load_starting_model(
        model_name, device, framework=framework, footprint_bytes=footprint_bytes, measure=measure
    )
    rows = study_rows(trials, stats) + list(extra_rows or [])
    return combined_fit(start.calibration_rows, rows, base=start.model)


# The machine's calibration may have been measured in other conditions than the study: between two
# sessions on this machine the same configuration's peak moved by 0.4 GiB (the resident share of
# libtorch's file pages). The study's own runs decide what they can; the calibration's weigh 1/20
# and fill in what they cannot separate yet (with the physical bounds of the terms). Refitted on two
# sessions' bench runs: held-out median 2.0% and 1.6%, against 9.8% and 1.8% with equal weights.
CALIBRATION_WEIGHT = 0.05


def combined_fit(
    calibration_rows: list[tuple[dict[str, float], float]],
    rows: list[tuple[dict[str, float], float]],
    *,
    base: MemoryModel | None = None,
) -> MemoryModel:
    """The model fitted on the study's runs, with the calibration's as a light prior.

    Args:
        calibration_rows: The calibration's measured (features, peak) rows, if any.
        rows: The study's measured rows.
        base: Where the fit starts: terms no row varies keep its coefficients, and with no rows at
            all it is the answer (default: the plain priors).
    """
    weight = CALIBRATION_WEIGHT if rows else 1.0
    return (base or MemoryModel.prior()).fit(
        calibration_rows + rows, weights=[weight] * len(calibration_rows) + [1.0] * len(rows)
    )
