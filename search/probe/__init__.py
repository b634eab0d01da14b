"""Probes: a full config's memory and speed measured on the whole dataset, and where they are kept."""

from __future__ import annotations

from typing import TYPE_CHECKING

from search._lazy import lazy_exports

if TYPE_CHECKING:
    from search.probe._run import ProbeBounds, ProbeResult, run_probe

__all__ = ["ProbeBounds", "ProbeResult", "run_probe"]
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "ProbeBounds": "search.probe._run",
        "ProbeResult": "search.probe._run",
        "run_probe": "search.probe._run",
    },
)
