"""A probe: one full config's memory and speed on the whole dataset, without training it.

A short training on a subset does not build the cache the full run builds, and a full training to
learn what ``cache=ram`` with 8 workers costs is what the user cannot afford. Memory and speed are
nearly deterministic (peak PSS repeats within 2-4% over seeds), so one short, exact measurement
answers them: the child (:mod:`search.child.trainer` with :mod:`search.child.probe`) starts yolov5's
training on the whole dataset exactly as the real run would (the train and val cache built as yolov5
builds them, the real dataloader workers), runs training batches until the tree's peak stops
growing and a whole validation pass, twice (:attr:`ProbeBounds.validation_passes`), and stops
once the second epoch's checkpoint is saved. It runs under
the same supervision as a trial (PSS of the tree, limits, statuses, cleanup:
:func:`search.trial._supervisor.run_trial`).

Its cost does not grow with epochs; with the dataset it grows where the real run's memory does
(building the cache) and in its validation passes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from search.data._dataset import load_dataset
from search.trial._config import TrialConfig, TrialLimits
from search.trial._record import TrialRecord, peak_when
from search.trial._supervisor import TrialProgress, run_trial

__all__ = ["ProbeBounds", "ProbeResult", "run_probe"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProbeBounds:
    """How many batches a probe's loops run at least and at most (the plateau rule decides between).

    The minimum grows with the workers: every worker must deliver twice beyond its prefetch
    (:class:`search.child.probe.PlateauRule`). Validation is one whole pass by default
    (``val_max_batches=None``): measured side by side, a pass cut at its plateau missed the peak of
    its end (the metrics over all images) by 2-3%, and its time per batch half the pass's.

    ``validation_passes`` bounded epochs run (each a bounded training loop, then a whole validation
    pass; the checkpoint between them is saved as the real run saves it). The real run's main
    process keeps ~30 MiB from its first pass into every later one, so a probe that ended after
    one pass read 3.6% below the peak of a 3-epoch run in ``bench/probe_bench.py`` (cache none, 2
    workers: probes 1267-1306 MiB against 1324-1334); after two, 1313 and 1321 MiB.
    """

    train_min_batches: int = 8
    train_max_batches: int = 100
    val_min_batches: int = 3
    val_max_batches: int | None = None
    validation_passes: int = 2

    def to_dict(self) -> dict[str, int | None]:
        """The bounds as the child's spec takes them."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProbeResult:
    """What a probe measured. Sizes in bytes, times in seconds.

    Attributes:
        knobs: The five knobs of the probed full config.
        status: As a trial's (``ok``, ``memory_limit``, ``timeout``, ``failed``, ``interrupted``).
        peak_host_bytes: Peak PSS of the process tree (a lower bound unless ``ok``).
        peak_gpu_bytes: Peak GPU memory (None without CUDA).
        peak_phase: The phase the peak fell in: ``startup``, ``cache``, ``training``,
            ``validation``, ``checkpoint`` or ``shutdown``; None where no sample saw it
            (:func:`search.trial._record.peak_when`).
        images_per_second: Training throughput once started (the second half of the batches run).
        projected_epoch_seconds: One epoch: ``projected_train_seconds`` plus ``validation_seconds``.
        projected_train_seconds: The epoch's training batches at the measured rate (within 2-8% of
            a full epoch's training in ``bench/probe_bench.py``).
        validation_seconds: The validation pass as the probe ran it. A probe validates a model
            trained for a few batches; a trained model's pass is slower (more candidate boxes
            above yolov5's confidence threshold go through NMS and the metrics).
        seconds: The probe's own wall time.
        train_images: Images in the training split (all of them: a probe never subsets).
        val_images: Images in the validation split.
        train: The bounded training loop: batches run, of how many, seconds per batch, why it stopped.
        val: The same for validation.
        error: Why the probe did not end ``ok``.
        record: The full trial record of the probe's child (memory method, timeline, log tail).
    """

    knobs: dict[str, Any]
    status: str
    peak_host_bytes: int | None
    peak_gpu_bytes: int | None
    peak_phase: str | None
    images_per_second: float | None
    projected_epoch_seconds: float | None
    projected_train_seconds: float | None
    validation_seconds: float | None
    seconds: float
    train_images: int | None
    val_images: int | None
    train: dict[str, Any]
    val: dict[str, Any]
    error: str | None
    record: dict[str, Any]

    @property
    def ok(self) -> bool:
        """Whether the probe ran to its end (its peak is the config's, not a lower bound)."""
        return self.status == "ok"

    @property
    def peak_when(self) -> str:
        """When its peak was set, as tables print it (:func:`search.trial._record.peak_when`)."""
        return peak_when(self.peak_phase, measured=self.peak_host_bytes is not None)

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data (what ``memfront probe --json`` writes)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProbeResult:
        """Rebuilds a result from :meth:`to_dict` output (unknown keys are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def of(cls, record: TrialRecord, *, images: tuple[int, int] | None = None) -> ProbeResult:
        """The probe's figures from its child's record.

        Args:
            record: The record of the probe's child.
            images: The dataset's (train, val) image counts, for a probe stopped before yolov5 said.
        """
        train, val = record.probe.get("train") or {}, record.probe.get("val") or {}
        ok = record.status == "ok" and bool(train)
        per_batch, per_val_batch = train.get("seconds_per_batch"), val.get("seconds_per_batch")
        batch = record.used.get("batch") or record.requested["batch"]
        train_seconds = val_seconds = None
        if ok and per_batch:
            train_seconds = train["batches_total"] * per_batch
            # A whole validation pass is timed as it ran (its metrics included); a bounded one is
            # scaled to its batches.
            whole = val.get("stop_reason") == "whole pass"
            val_seconds = (
                val.get("seconds") if whole else (val.get("batches_total") or 0) * (per_val_batch or 0)
            )
        projected = None if train_seconds is None else train_seconds + (val_seconds or 0.0)
        error = record.error
        if record.status == "ok" and not train:
            error = "the child ended without running the probe's loops"
        return cls(
            knobs={k: record.requested[k] for k in ("batch", "imgsz", "cache", "workers", "amp")},
            status=record.status if ok or record.status != "ok" else "failed",
            peak_host_bytes=record.peak_host_bytes,
            peak_gpu_bytes=record.peak_gpu_bytes,
            peak_phase=record.memory.get("peak_phase"),
            images_per_second=batch / per_batch if ok and per_batch else None,
            projected_epoch_seconds=projected,
            projected_train_seconds=train_seconds,
            validation_seconds=val_seconds,
            seconds=record.wall_seconds,
            train_images=record.used.get("train_images") or (images[0] if images else None),
            val_images=record.used.get("val_images") or (images[1] if images else None),
            train=train,
            val=val,
            error=error,
            record=record.to_dict(),
        )


def run_probe(
    config: TrialConfig,
    *,
    limits: TrialLimits | None = None,
    bounds: ProbeBounds | None = None,
    on_progress: Callable[[TrialProgress], None] | None = None,
) -> ProbeResult:
    """Probes one full config on the whole dataset.

    Args:
        config: The config; its ``epochs``, ``train_images`` and ``train_fraction`` are ignored (a
            probe runs ``bounds.validation_passes`` bounded epochs on every image).
        limits: Memory and time limits, enforced as for a trial.
        bounds: The loops' batch bounds.
        on_progress: Called twice a second with the probe's phase and memory.

    Returns:
        The probe's result, whatever its status.

    Raises:
        InputError: If the dataset or model is bad; nothing is started then.
    """
    dataset = load_dataset(config.data)
    passes = (bounds or ProbeBounds()).validation_passes
    whole = config.model_copy(update={"epochs": passes, "train_images": None, "train_fraction": None})
    record = run_trial(
        whole, limits=limits, probe=(bounds or ProbeBounds()).to_dict(), on_progress=on_progress
    )
    return ProbeResult.of(record, images=(len(dataset.train_images), len(dataset.val_images)))
