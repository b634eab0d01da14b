"""Measuring what a trial costs: its tree's PSS, cgroup accounting, GPU memory, child snippets."""

from __future__ import annotations

from typing import TYPE_CHECKING

from search._lazy import lazy_exports

if TYPE_CHECKING:
    from search.measure._cgroup import TrialCgroup, cgroup_figures
    from search.measure._footprint import check_device, framework_footprint_bytes
    from search.measure._gpu import NvmlProbe
    from search.measure._memory import DEFAULT_PSS_CPU_BUDGET, MemoryReport, TreeSampler
    from search.measure._snippet import run_snippet

__all__ = [
    "DEFAULT_PSS_CPU_BUDGET",
    "MemoryReport",
    "NvmlProbe",
    "TreeSampler",
    "TrialCgroup",
    "cgroup_figures",
    "check_device",
    "framework_footprint_bytes",
    "run_snippet",
]
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "TrialCgroup": "search.measure._cgroup",
        "cgroup_figures": "search.measure._cgroup",
        "check_device": "search.measure._footprint",
        "framework_footprint_bytes": "search.measure._footprint",
        "NvmlProbe": "search.measure._gpu",
        "DEFAULT_PSS_CPU_BUDGET": "search.measure._memory",
        "MemoryReport": "search.measure._memory",
        "TreeSampler": "search.measure._memory",
        "run_snippet": "search.measure._snippet",
    },
)
