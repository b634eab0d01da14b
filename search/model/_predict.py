"""Predicting a trial's peak host memory before it runs, from interpretable terms.

``peak PSS ≈ Σ coefficient × feature`` over these terms, each known before training:

* ``framework``: 1 — Python, torch, yolov5, the model, its optimizer and EMA copy (bytes);
* ``activations``: batch × imgsz² — what a batch costs in flight (the larger of training's batch and
  validation's doubled batch without gradients; bytes per pixel of the batch);
* ``ram_cache``: the bytes of every train and val image resized as yolov5 caches them (long side =
  imgsz), when ``cache=ram`` (coefficient ~1);
* ``worker_processes``: how many dataloader processes run (train workers + validation's doubled
  workers, as yolov5 caps them): what each adds of its own (bytes per process);
* ``worker_cache_copies``: the RAM cache again when workers run, for the part of it forked workers
  end up copying (reference counts touch the cached arrays' pages).

Coefficients start from the best this machine offers before any fit
(:func:`search.model._start.starting_model`): its short calibration when one is cached, else priors
whose framework term is anchored on a measured footprint, else plain priors. They are refined by
non-negative least squares on relative error from every measured trial. A term whose feature never
varied in the data keeps its starting value: it cannot be fitted, only assumed.
"""

from __future__ import annotations

import dataclasses
import math
import os
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.data._dataset import DatasetSpec
from search.data._scans import ScanCache, cached_scan
from search.errors import InputError
from search.frameworks import DEFAULT_FRAMEWORK, get_framework

if TYPE_CHECKING:
    pass

__all__ = [
    "BOUNDS",
    "MODEL_STATE_BYTES",
    "PRIORS",
    "TERMS",
    "DatasetStats",
    "MemoryModel",
    "Prediction",
    "features",
    "loader_workers",
]

TERMS = ("framework", "activations", "ram_cache", "worker_processes", "worker_cache_copies")
# Priors used until data says otherwise, for yolov5n on a 2-core CPU machine. ``activations`` and
# ``worker_processes`` are what every calibration fit with today's sampler found: 390 and 444 bytes
# per batch pixel and 0 and 6.9 MB per worker in bench/results/predict_bench.json (its calibration and
# its study's fit), 440-489 and 0 in five tiny trials of issue 10 (60 and 60 MB before: 7x too few
# bytes per pixel, and 180 MB too many for one worker's three processes). ``framework`` is a last
# resort: a machine's own footprint replaces it (:data:`MODEL_STATE_BYTES`); fits on the project's
# machine found 1.05e9-1.48e9 (the resident share of libtorch's file pages moves between sessions).
# What physics allows, where it says more than "not negative": the RAM cache holds exactly the
# resized images' bytes (plus small per-image overhead), so a fit on runs whose caches differ little
# (a study's subset of 200 images) cannot wander from it (it did, to 0.54, and extrapolation missed).
BOUNDS = {"ram_cache": (0.9, 1.25)}

PRIORS = {
    "framework": 1.3e9,
    "activations": 440.0,
    "ram_cache": 1.0,
    "worker_processes": 7e6,
    "worker_cache_copies": 0.5,
}

# What a yolov5n trial holds beyond the bare import that the footprint measures (the model, its
# gradients, optimizer state and EMA copy, the dataloaders, yolov5's training and final-validation
# state, the allocator's arenas): the framework term is footprint + this. Measured for issue 10 on a
# 2-core CPU machine (footprint 843 MiB): five tiny 1-epoch trials (batch 4-16, imgsz 64-160, cache
# none/ram, 0-1 workers) peaked 165, 193, 149, 224 and 76 MiB above footprint + the other terms'
# priors (median 165, mean 161; a TINY_RUNS calibration fitted the framework at footprint + 174 MiB).
# A larger model holds more (yolov5s has 3.7x the parameters): a calibration measures it.
MODEL_STATE_BYTES = 165 * 1024**2


def loader_workers(
    workers: int,
    batch: int,
    cpus: int | None = None,
    *,
    framework: str = DEFAULT_FRAMEWORK,
    device: str = "cpu",
) -> tuple[int, int]:
    """Dataloader processes the framework really starts: (train, validation).

    Each framework has its rule (:meth:`search.frameworks.Framework.loader_workers`): yolov5 caps
    workers at the CPU count and the batch, and doubles them for validation; ultralytics runs none
    on a CPU.
    """
    return get_framework(framework).loader_workers(
        workers, batch, device=device, cpus=cpus or os.cpu_count() or 1
    )


@dataclasses.dataclass(frozen=True)
class DatasetStats:
    """Pixel sizes (width, height) of a dataset's images, read from the files' headers.

    Attributes:
        train_sizes: The training images' sizes.
        val_sizes: The validation images'.
        unreadable: The images that could not be read, each with why: yolov5 and ultralytics
            skip a corrupt image with a warning, so they count in no figure here either.
    """

    train_sizes: tuple[tuple[int, int], ...]
    val_sizes: tuple[tuple[int, int], ...]
    unreadable: tuple[tuple[Path, str], ...] = ()

    @classmethod
    def read(cls, dataset: DatasetSpec, *, cache: ScanCache = "store") -> DatasetStats:
        """Every image's size from its header (no decoding), kept between commands until an image
        changes (:mod:`search.data._scans`).

        Args:
            dataset: The dataset.
            cache: ``store``: from the cache, else read and stored; ``read``: from the cache, else
                read (what commands that only read a study use: they write nothing); ``off``: read
                (a temporary dataset).

        Raises:
            InputError: If no training or no validation image can be read.
        """
        if cache == "off":
            return cls._scan(dataset)
        import PIL

        return cached_scan(
            "image-sizes", dataset=dataset.yaml_path, files=dataset.all_images,
            # Pillow's version too: a newer one may read images an older one could not.
            settings=[len(dataset.train_images), len(dataset.val_images), PIL.__version__],
            scan=lambda: cls._scan(dataset), encode=cls._encode, decode=cls._decode, store=cache == "store",
        )  # fmt: skip

    @staticmethod
    def _encode(stats: DatasetStats) -> dict[str, Any]:
        # Runs of equal sizes (a dataset's images mostly share a few): compact, and in order.
        def runs(sizes: Sequence[tuple[int, int]]) -> list[list[int]]:
            found: list[list[int]] = []
            for width, height in sizes:
                if found and found[-1][:2] == [width, height]:
                    found[-1][2] += 1
                else:
                    found.append([width, height, 1])
            return found

        unreadable = [[str(path), why] for path, why in stats.unreadable]
        return {"train": runs(stats.train_sizes), "val": runs(stats.val_sizes), "unreadable": unreadable}

    @staticmethod
    def _decode(data: dict[str, Any]) -> DatasetStats:
        def sizes(runs: list[list[int]]) -> tuple[tuple[int, int], ...]:
            return tuple((int(width), int(height)) for width, height, count in runs for _ in range(count))

        return DatasetStats(
            train_sizes=sizes(data["train"]), val_sizes=sizes(data["val"]),
            unreadable=tuple((Path(path), str(why)) for path, why in data["unreadable"]),
        )  # fmt: skip

    @classmethod
    def _scan(cls, dataset: DatasetSpec) -> DatasetStats:
        from PIL import Image, UnidentifiedImageError

        unreadable: list[tuple[Path, str]] = []

        def sizes(paths: Sequence[Path], split: str) -> tuple[tuple[int, int], ...]:
            found = []
            for path in paths:
                try:
                    with Image.open(path) as image:
                        found.append((int(image.width), int(image.height)))
                except (OSError, UnidentifiedImageError) as error:
                    unreadable.append((path, str(error)))
            if paths and not found:
                path, why = unreadable[-1]
                raise InputError(f"no {split} image can be read: {path} ({why})")
            return tuple(found)

        train, val = sizes(dataset.train_images, "training"), sizes(dataset.val_images, "validation")
        return cls(train_sizes=train, val_sizes=val, unreadable=tuple(unreadable))

    @property
    def unreadable_images(self) -> tuple[Path, ...]:
        """The paths of the images that could not be read."""
        return tuple(path for path, _ in self.unreadable)

    @property
    def unreadable_note(self) -> str | None:
        """What a study says of the images it cannot read (None: every image reads)."""
        if not self.unreadable:
            return None
        count = len(self.unreadable)
        path, why = self.unreadable[0]
        return (
            f"{count} image{'s' if count > 1 else ''} of the dataset cannot be read (the first: "
            f"{path} ({why})): yolov5 and ultralytics skip {'them' if count > 1 else 'it'}, and so "
            "do memfront's memory figures"
        )

    @staticmethod
    def _resized_bytes(sizes: Iterable[tuple[int, int]], imgsz: int) -> float:
        total = 0.0
        for width, height in sizes:
            ratio = imgsz / max(width, height)
            total += math.ceil(width * ratio) * math.ceil(height * ratio) * 3
        return total

    def cache_bytes(self, imgsz: int, *, train_images: int | None = None) -> float:
        """Bytes of the RAM cache: train and val images resized as yolov5 does (uint8, 3 channels).

        Args:
            imgsz: The image size (after rounding to the stride).
            train_images: Count of training images to assume (the mean image scaled): a subset,
                or a larger dataset of the same kind.
        """
        train = self._resized_bytes(self.train_sizes, imgsz)
        if train_images is not None and self.train_sizes:
            train *= train_images / len(self.train_sizes)
        return train + self._resized_bytes(self.val_sizes, imgsz)


def round_imgsz(imgsz: int, stride: int = 32) -> int:
    """yolov5 rounds imgsz up to a multiple of the stride (and at least twice it)."""
    return max(math.ceil(imgsz / stride) * stride, 2 * stride)


def features(
    *,
    batch: int,
    imgsz: int,
    cache: str,
    workers: int,
    stats: DatasetStats,
    train_images: int | None = None,
    framework: str = DEFAULT_FRAMEWORK,
    device: str = "cpu",
) -> dict[str, float]:
    """The model's features for one configuration of ``framework`` on ``device``."""
    size = round_imgsz(imgsz)
    cache_bytes = stats.cache_bytes(size, train_images=train_images) if cache == "ram" else 0.0
    train_workers, val_workers = loader_workers(workers, batch, framework=framework, device=device)
    return {
        "framework": 1.0,
        "activations": float(batch * size * size),
        "ram_cache": cache_bytes,
        "worker_processes": float(train_workers + val_workers),
        "worker_cache_copies": cache_bytes if train_workers + val_workers > 0 else 0.0,
    }


@dataclasses.dataclass(frozen=True)
class Prediction:
    """A predicted peak and its breakdown by term (bytes)."""

    total_bytes: float
    terms: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"total_bytes": int(self.total_bytes), "terms": {k: int(v) for k, v in self.terms.items()}}


@dataclasses.dataclass(frozen=True)
class MemoryModel:
    """Coefficients per term, and how well they fit what was measured."""

    coefficients: dict[str, float]
    fitted_terms: tuple[str, ...] = ()
    samples: int = 0
    median_error: float | None = None
    max_error: float | None = None

    @classmethod
    def prior(cls) -> MemoryModel:
        """The model before any measurement."""
        return cls(coefficients=dict(PRIORS))

    @classmethod
    def anchored(cls, footprint_bytes: float) -> MemoryModel:
        """The priors with the framework term taken from a measured footprint (+ model state)."""
        return cls(coefficients={**PRIORS, "framework": float(footprint_bytes) + MODEL_STATE_BYTES})

    def predict(self, feature_values: dict[str, float]) -> Prediction:
        """Predicts the peak host memory of a configuration."""
        terms = {name: self.coefficients[name] * feature_values[name] for name in TERMS}
        return Prediction(total_bytes=sum(terms.values()), terms=terms)

    def fit(
        self, rows: Sequence[tuple[dict[str, float], float]], weights: Sequence[float] | None = None
    ) -> MemoryModel:
        """Refits on measured (features, peak bytes) rows, minimising the (weighted) relative error.

        Terms whose feature does not vary among the rows keep this model's coefficient; a term with
        physical bounds (:data:`BOUNDS`) stays within them. The reported errors are on the rows of
        the largest weight.
        """
        import numpy as np
        from scipy.optimize import lsq_linear

        row_weights = [1.0] * len(rows) if weights is None else list(weights)
        kept = [(f, float(y), w) for (f, y), w in zip(rows, row_weights, strict=True) if y and y > 0]
        if not kept:
            return self
        usable = [(f, y) for f, y, _ in kept]
        weight = np.array([w for _, _, w in kept], dtype=float)
        matrix = np.array([[f[name] for name in TERMS] for f, _ in usable], dtype=float)
        target = np.array([y for _, y in usable], dtype=float)
        spread = np.ptp(matrix, axis=0)
        magnitude = np.maximum(np.abs(matrix).max(axis=0), 1.0)
        free = [i for i, name in enumerate(TERMS) if name == "framework" or spread[i] > 1e-9 * magnitude[i]]
        fixed = [i for i in range(len(TERMS)) if i not in free]
        prior = np.array([self.coefficients[name] for name in TERMS], dtype=float)
        residual_target = target - matrix[:, fixed] @ prior[fixed]
        # Relative error: divide each row by its measurement; scale columns for conditioning.
        weighted = matrix[:, free] * (weight / target)[:, None]
        scale = np.maximum(np.abs(weighted).max(axis=0), 1e-30)
        lower = np.array([BOUNDS.get(TERMS[i], (0.0, np.inf))[0] for i in free])
        upper = np.array([BOUNDS.get(TERMS[i], (0.0, np.inf))[1] for i in free])
        solution = lsq_linear(
            weighted / scale, residual_target * weight / target, bounds=(lower * scale, upper * scale)
        ).x
        coefficients = prior.copy()
        coefficients[free] = solution / scale
        fitted = dataclasses.replace(
            self,
            coefficients={name: float(c) for name, c in zip(TERMS, coefficients, strict=True)},
            fitted_terms=tuple(TERMS[i] for i in free),
        )
        return fitted.scored([row for row, w in zip(usable, weight, strict=True) if w == weight.max()])

    def scored(self, rows: Sequence[tuple[dict[str, float], float]]) -> MemoryModel:
        """This model with its errors on ``rows``: median and max of |predicted - measured| / measured."""
        errors = [abs(self.predict(f).total_bytes - y) / y for f, y in rows if y and y > 0]
        if not errors:
            return self
        return dataclasses.replace(
            self, samples=len(errors), median_error=float(statistics.median(errors)), max_error=max(errors)
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MemoryModel:
        """Inverse of :meth:`to_dict`."""
        return cls(
            coefficients={k: float(v) for k, v in data["coefficients"].items()},
            fitted_terms=tuple(data.get("fitted_terms", ())),
            samples=int(data.get("samples", 0)),
            median_error=data.get("median_error"),
            max_error=data.get("max_error"),
        )
