"""The framework's own footprint: what a trial costs before it trains anything.

A Python process that has imported torch and yolov5's training module, measured as PSS. A memory
limit below it cannot fit any trial: ``run`` reports that as bad input instead of running a study of
certain failures. Measured once per machine and software (a few seconds) and cached beside the
calibrations.
"""

from __future__ import annotations

import json
from pathlib import Path

from search.errors import InputError
from search.frameworks import DEFAULT_FRAMEWORK, get_framework
from search.frameworks._base import check_device_text
from search.measure._snippet import run_snippet
from search.model._calibration import cache_dir, calibration_key, write_cache

__all__ = ["cached_footprint_bytes", "check_device", "framework_footprint_bytes"]

_FOOTPRINT_SNIPPET = """\
import torch  # noqa: F401
{import_line}  # noqa: F401
for line in open("/proc/self/smaps_rollup"):
    if line.startswith("Pss:"):
        result(int(line.split()[1]) * 1024)
"""


def framework_footprint_bytes(*, device: str = "cpu", framework: str = DEFAULT_FRAMEWORK) -> int:
    """PSS of a process that imported torch and the framework's trainer (cached).

    Raises:
        TrialError: If the child cannot import them (a broken installation).
    """
    cached = cached_footprint_bytes(device=device, framework=framework)
    if cached is not None:
        return cached
    path = _footprint_path(device, framework)
    snippet = _FOOTPRINT_SNIPPET.format(import_line=get_framework(framework).import_line)
    footprint = int(
        run_snippet(snippet, what=f"import torch and {framework} to measure the framework's footprint")
    )
    write_cache(path, json.dumps({"pss_bytes": footprint}) + "\n")
    return footprint


def cached_footprint_bytes(*, device: str = "cpu", framework: str = DEFAULT_FRAMEWORK) -> int | None:
    """The footprint :func:`framework_footprint_bytes` cached on this machine, or None: measures nothing."""
    path = _footprint_path(device, framework)
    try:
        return int(json.loads(path.read_text())["pss_bytes"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # not measured yet, or damaged: measured again when a run needs it


def _footprint_path(device: str, framework: str) -> Path:
    return cache_dir() / "footprint" / f"{calibration_key('framework', device, framework=framework)}.json"


_CUDA_SNIPPET = "import torch; result(torch.cuda.device_count())"


def check_device(device: str) -> None:
    """Checks that ``device`` (``cpu``, or CUDA indices such as ``0`` or ``0,1``) exists here.

    The CUDA count comes from a child process, so that the caller never imports torch.

    Raises:
        InputError: For a malformed device or a CUDA index this machine does not have.
        TrialError: If torch cannot be imported.
    """
    if device == "cpu":
        return
    check_device_text(device)
    indices = device.removeprefix("cuda:").split(",")
    count = int(run_snippet(_CUDA_SNIPPET, what="import torch to count the CUDA devices"))
    missing = [index.strip() for index in indices if int(index) >= count]
    if missing:
        raise InputError(
            f"device {device}: CUDA device {missing[0]} does not exist here ({count} CUDA devices visible)"
        )
