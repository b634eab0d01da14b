"""A probe's bounded epoch, inside the trial's child: when to stop training and validating.

A probe (:mod:`search.probe`) runs one full config as the real run would (the whole dataset, its
cache built by yolov5, the real dataloader workers) but only until its memory peak is established.
:class:`BoundedLoader` wraps yolov5's train loader (and the val loader, if the probe bounds it too):
yolov5 sees the loader's full length (so its schedule and warm-up are those of the real run) but the
iteration ends early and yolov5 goes on to validation; after the probe's last pass
(``validation_passes``, two by default: :class:`search.probe.ProbeBounds`) the trainer ends the run
once that epoch's checkpoint is written, as the real run writes one after every epoch
(:class:`search.child._common.ProbeEnd`).

Before validation, the bounded training loop ends with a full garbage collection
(:func:`gc.collect`). The real run's first full collection after its dataloader workers are forked
writes to the header of every object the collector tracks, so the main process copies each page
holding one: on the demo's 3000 images with 2 workers that is ~130 MiB more of the tree's PSS, from
the start of the real run's validation on. A bounded epoch often ends before its first full
collection, and then read 10-16% below the real run; the probe runs it where the real run's comes.

When the peak is established (:class:`PlateauRule`): the supervisor writes the tree's running peak
(the PSS estimate that the probe reports, :mod:`search.measure._memory`) into a file twice a second;
after every batch the loader reads it. It stops once every dataloader worker has delivered at least
two batches beyond its prefetch (``min_batches``) and the peak has not grown by more than 1% over the
last ``window`` batches, nor for the last 2 seconds; or at ``max_batches``; or at the loader's end.

Imports neither torch nor yolov5: the trainer hands it the loaders.
"""

from __future__ import annotations

import dataclasses
import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from search._pause import clock

__all__ = ["BoundedLoader", "PlateauRule", "bound_for_probe", "read_peak"]

_PREFETCH_FACTOR = 2  # torch's DataLoader default, which yolov5 keeps
_GROWTH = 0.01
_QUIET_S = 2.0


def read_peak(path: Path | None) -> int | None:
    """The supervisor's running peak of the tree, if it has written one."""
    if path is None:
        return None
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@dataclasses.dataclass
class PlateauRule:
    """Decides when a bounded loop has seen its memory peak.

    Attributes:
        min_batches: Batches always run (every worker delivers twice beyond its prefetch).
        max_batches: Batches never exceeded.
        window: Batches over which the peak must not have grown.
        peak_file: Where the supervisor writes the tree's running peak.
    """

    min_batches: int
    max_batches: int
    window: int
    peak_file: Path | None = None

    @classmethod
    def for_workers(cls, workers: int, *, least: int, most: int, peak_file: Path | None) -> PlateauRule:
        """The rule for a loader with ``workers`` worker processes."""
        minimum = max(least, (_PREFETCH_FACTOR + 2) * workers + 2)
        return cls(
            min_batches=min(minimum, most), max_batches=most, window=max(4, 2 * workers), peak_file=peak_file
        )

    def reason(self, peaks: list[tuple[float, int]]) -> str | None:
        """Why to stop after these (time, peak) readings, one per batch; None to go on."""
        done = len(peaks)
        if done >= self.max_batches:
            return "max_batches"
        if done < max(self.min_batches, self.window + 1):
            return None
        now, latest = peaks[-1]
        before = peaks[-self.window - 1][1]
        quiet_since = next(
            (t for t, p in peaks if p > latest / (1 + _GROWTH)), peaks[0][0]
        )  # when the peak first came within 1% of where it is now
        if latest <= before * (1 + _GROWTH) and now - quiet_since >= _QUIET_S:
            return "plateau"
        return None


class BoundedLoader:
    """A yolov5 dataloader that ends its iteration once the :class:`PlateauRule` says so.

    Everything but iteration is the wrapped loader's (``len``, ``num_workers``, ``dataset``), so
    yolov5 plans the epoch as the real run does. ``durations`` holds the seconds between successive
    batches as the loop consumed them (fetch and step together: what the real epoch spends).
    """

    def __init__(self, loader: Any, rule: PlateauRule, *, collect_at_end: bool = False) -> None:
        self._loader = loader
        self._rule = rule
        self._collect_at_end = collect_at_end
        self.durations: list[float] = []
        self.peaks: list[tuple[float, int]] = []
        self.stop_reason: str | None = None
        self.passes = 0

    def __len__(self) -> int:
        return len(self._loader)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)

    def __iter__(self) -> Iterator[Any]:
        last = clock()
        self.peaks = []  # each epoch runs to its own plateau; ``durations`` spans them all
        self.passes += 1
        batches = iter(self._loader)
        for batch in batches:
            yield batch
            now = clock()
            self.durations.append(now - last)
            last = now
            self.peaks.append((now, read_peak(self._rule.peak_file) or 0))
            self.stop_reason = self._rule.reason(self.peaks)
            if self.stop_reason is not None:
                break
        else:
            self.stop_reason = "end of the loader"
        if self._collect_at_end:
            gc.collect()  # the real run's first full collection with the workers alive (see above)

    def steady_seconds(self) -> float | None:
        """Seconds per batch once started: the mean over the second half of the batches run."""
        if not self.durations:
            return None
        tail = self.durations[len(self.durations) // 2 :]
        return sum(tail) / len(tail)

    def summary(self) -> dict[str, Any]:
        """What the probe event says of this loop."""
        return {
            "batches": len(self.durations),
            "batches_total": len(self._loader),
            "passes": self.passes,
            "seconds": sum(self.durations),
            "seconds_per_batch": self.steady_seconds(),
            "stop_reason": self.stop_reason,
        }


def bound_for_probe(loader: Any, probe: dict[str, Any], split: str) -> BoundedLoader | None:
    """The framework's ``split`` loader (``train`` or ``val``) bounded as the probe's spec says;
    None when the probe runs that split's whole pass."""
    most = probe.get(f"{split}_max_batches")
    if most is None:
        return None
    peak_file = Path(probe["peak_file"]) if probe.get("peak_file") else None
    rule = PlateauRule.for_workers(
        int(loader.num_workers), least=probe[f"{split}_min_batches"], most=most, peak_file=peak_file
    )
    return BoundedLoader(loader, rule, collect_at_end=split == "train")
