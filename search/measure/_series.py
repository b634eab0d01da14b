"""Bounded-size records of a long trial's samples: its memory series and a spread sample of values.

A trial may run for a day at up to 400 samples a second; both structures hold a fixed number of
entries whatever the length, and give what an end-of-run computation over every sample would.
"""

from __future__ import annotations

__all__ = ["MAX_SERIES_POINTS", "Series", "SpreadSample"]

MAX_SERIES_POINTS = 400
"""The most windows a trial's stored memory series holds."""


class Series:
    """The memory series of a trial, decimated as it grows to at most ``capacity`` windows.

    Each window holds ``width`` consecutive fast samples (the last one may hold fewer) and keeps
    their highest estimate with its time, their highest RSS and the highest of the exact PSS reads
    taken with them (None if none). When every window is full and another sample comes, adjacent
    pairs merge and ``width`` doubles: the windows are always those of an end-of-trial downsampling
    at the power-of-two step ``width``, so its output is the same while only ``capacity`` windows are
    ever held (a 24-hour trial at 25-400 Hz holds 2-35 million samples).

    Args:
        capacity: The most windows held; even, so that a merge leaves every window full.
    """

    def __init__(self, capacity: int = MAX_SERIES_POINTS) -> None:
        if capacity < 2 or capacity % 2:
            raise ValueError(f"capacity must be even and at least 2, not {capacity}")
        self._capacity = capacity
        self.width = 1
        self._t: list[float] = []
        self._est: list[int] = []
        self._rss: list[int] = []
        self._pss: list[int | None] = []
        # Samples in the last window; "full" at the start so that the first sample opens one.
        self._filled = 1

    def add(self, t: float, estimate: int, rss: int, pss: int | None = None) -> None:
        """Adds one fast sample, and the exact PSS read taken with it if any."""
        if self._filled < self.width:
            last = len(self._t) - 1
            # Strictly higher only: the window keeps the time of its first maximum, as max() did.
            if estimate > self._est[last]:
                self._est[last] = estimate
                self._t[last] = t
            if rss > self._rss[last]:
                self._rss[last] = rss
            if pss is not None:
                held = self._pss[last]
                self._pss[last] = pss if held is None else max(held, pss)
            self._filled += 1
            return
        if len(self._t) == self._capacity:
            self._merge_pairs()
        self._t.append(t)
        self._est.append(estimate)
        self._rss.append(rss)
        self._pss.append(pss)
        self._filled = 1

    def _merge_pairs(self) -> None:
        t: list[float] = []
        est: list[int] = []
        rss: list[int] = []
        pss: list[int | None] = []
        for left in range(0, len(self._t), 2):
            right = left + 1
            # The left window on a tie: it holds the earlier samples, so the first maximum.
            best = right if self._est[right] > self._est[left] else left
            t.append(self._t[best])
            est.append(self._est[best])
            rss.append(max(self._rss[left], self._rss[right]))
            reads = [v for v in (self._pss[left], self._pss[right]) if v is not None]
            pss.append(max(reads) if reads else None)
        self._t, self._est, self._rss, self._pss = t, est, rss, pss
        self.width *= 2
        # Only merged when every window was full: each merged one holds 2 * the old width.
        self._filled = self.width

    def to_dict(self) -> dict[str, list[float | None]]:
        """The series as the report stores it: one point per window, times rounded to the ms."""
        # Copies, typed as the report's field: the sampler may go on adding after a report.
        host: list[float | None] = list(self._est)
        rss: list[float | None] = list(self._rss)
        pss: list[float | None] = list(self._pss)
        return {
            "t_s": [round(t, 3) for t in self._t],
            "host_bytes": host,
            "rss_tree_bytes": rss,
            "pss_read_bytes": pss,
        }


class SpreadSample:
    """At most ``capacity`` of the values added, spread evenly over all of them.

    Every value is kept until ``capacity`` are held; then every other one is dropped and from then on
    only every second value added is kept, and so on: the values held are those at a fixed stride
    from the first, so their median follows the median of all without holding them all.

    Args:
        capacity: The most values held; even, so that the stride stays aligned after a halving.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 2 or capacity % 2:
            raise ValueError(f"capacity must be even and at least 2, not {capacity}")
        self._capacity = capacity
        self._stride = 1
        self._added = 0
        self.values: list[int] = []

    def add(self, value: int) -> None:
        """Adds one value (kept if it falls on the stride)."""
        index = self._added
        self._added += 1
        if index % self._stride:
            return
        if len(self.values) == self._capacity:
            del self.values[1::2]
            self._stride *= 2
        # With an even capacity, index (capacity * the old stride) is on the doubled stride too.
        self.values.append(value)
