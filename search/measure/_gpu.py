"""Device memory of a process tree as NVML sees it, from the parent, when NVML is there.

The child reports its own allocator peaks (``torch.cuda.max_memory_reserved``); NVML adds what the
allocator does not see (the CUDA context, cuDNN workspaces, other libraries). Both are optional: on a
machine without an NVIDIA driver or without ``nvidia-ml-py`` this reports None, never 0.
"""

from __future__ import annotations

import contextlib
from typing import Any

__all__ = ["NvmlProbe"]


class NvmlProbe:
    """Reads the device memory used by given processes through NVML."""

    def __init__(self) -> None:
        self._nvml: Any = None
        self.unavailable_reason: str | None = None
        self.unmatched_reason: str | None = None
        self.matched = False
        try:
            import pynvml  # nvidia-ml-py; optional (extra "gpu")

            pynvml.nvmlInit()
            self._nvml = pynvml
        except Exception as error:
            self.unavailable_reason = f"NVML unavailable: {type(error).__name__}: {error}"

    @property
    def available(self) -> bool:
        """Whether NVML answered."""
        return self._nvml is not None

    def used_bytes(self, pids: set[int]) -> int | None:
        """Device memory used by these processes, summed over all GPUs; None without NVML."""
        if self._nvml is None:
            return None
        nvml = self._nvml
        total = 0
        matched = listed = 0
        try:
            for index in range(nvml.nvmlDeviceGetCount()):
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                for proc in nvml.nvmlDeviceGetComputeRunningProcesses(handle):
                    listed += 1
                    if proc.pid in pids and proc.usedGpuMemory is not None:
                        matched += 1
                        total += int(proc.usedGpuMemory)
        except Exception as error:  # no permission, or not supported (e.g. under gVisor)
            failure = f"{type(error).__name__}: {error}"
            self.unmatched_reason = f"NVML could not list the GPUs' processes: {failure}"
            return None
        if not listed:
            # Before the child creates its CUDA context this is normal; it stays the reason only if
            # no sample of the trial ever matched (some containers hide every process from NVML).
            self.unmatched_reason = "NVML lists no compute process on any GPU: no NVML figure"
            return None
        if not matched:
            # Inside a container NVML reports the host's PIDs, which never match the trial's own:
            # 0 bytes would read as a measurement.
            self.unmatched_reason = (
                f"NVML lists {listed} processes on the GPUs but none with the trial's PIDs "
                "(a container's PID namespace?): no NVML figure"
            )
            return None
        self.unmatched_reason = None
        self.matched = True
        return total

    @property
    def reason(self) -> str | None:
        """Why there is no NVML figure (unavailable, or no process of the trial's was ever matched)."""
        if self.unavailable_reason is not None:
            return self.unavailable_reason
        return None if self.matched else self.unmatched_reason

    def close(self) -> None:
        """Releases NVML."""
        if self._nvml is not None:
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()
            self._nvml = None
