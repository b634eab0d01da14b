"""The framework's own footprint: what a trial costs before it trains anything.

A Python process that has imported torch and yolov5's training module, measured as PSS. A memory
limit below it cannot fit any trial: ``run`` reports that as bad input instead of running a study of
certain failures. Measured once per machine and software (a few seconds) and cached beside the
calibrations.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from search import compat
from search.calibration import cache_dir, calibration_key
from search.errors import InputError

__all__ = ["check_device", "framework_footprint_bytes", "run_probe"]

# The probe's result travels in a file of its own: a child's stdout also carries whatever third-party
# packages print on import (ultralytics announces a new settings file on a machine's first run).
_PROBE_WRAPPER = """\
import json, os, sys, traceback
path = os.environ["MEMFRONT_PROBE_RESULT"]
def result(value):
    with open(path, "w") as handle:
        json.dump({"value": value}, handle)
try:
    exec(compile(sys.argv[1], "<memfront probe>", "exec"), {"result": result})
except BaseException as error:
    with open(path, "w") as handle:
        json.dump({"error": "".join(traceback.format_exception_only(type(error), error)).strip()}, handle)
    sys.exit(1)
"""


def run_probe(code: str, *, what: str, timeout_s: float = 300) -> Any:
    """Runs ``code`` in a child Python process and returns the value it passed to ``result(value)``.

    The child gets the same private settings folders as a trial (:func:`search.compat.child_environment`),
    so it writes nothing into the user's home and behaves the same on a first run as on later ones.

    Args:
        code: Python source; it calls ``result(value)`` with a JSON-ready value.
        what: What the probe measures, for the error message.
        timeout_s: Seconds before the probe is killed.

    Raises:
        InputError: If the probe fails, hangs or returns nothing; the message names the child's error.
    """
    with tempfile.TemporaryDirectory(prefix="memfront-probe-") as tmp:
        folder = Path(tmp)
        result_path = folder / "result.json"
        log_path = folder / "probe.log"
        env = {
            **os.environ,
            **compat.child_environment(folder / "settings"),
            "MEMFRONT_PROBE_RESULT": str(result_path),
        }
        try:
            with open(log_path, "wb") as log:
                subprocess.run(
                    [sys.executable, "-c", _PROBE_WRAPPER, code],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=folder,
                    timeout=timeout_s, check=False,
                )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise InputError(f"cannot {what}: the probe did not finish within {timeout_s:.0f} s") from None
        try:
            answer = json.loads(result_path.read_text())
        except (OSError, ValueError):
            lines = log_path.read_text(errors="replace").strip().splitlines() if log_path.is_file() else []
            raise InputError(
                f"cannot {what}: the probe ended with no result ({(lines or ['no output'])[-1]})"
            ) from None
    if "error" in answer:
        raise InputError(f"cannot {what}: {answer['error'].splitlines()[-1]}")
    return answer["value"]


_FOOTPRINT_PROBE = """\
import torch  # noqa: F401
import yolov5.train  # noqa: F401
for line in open("/proc/self/smaps_rollup"):
    if line.startswith("Pss:"):
        result(int(line.split()[1]) * 1024)
"""


def framework_footprint_bytes(*, device: str = "cpu") -> int:
    """PSS of a process that imported torch and yolov5's trainer (cached).

    Raises:
        InputError: If the probe cannot import them (a broken installation).
    """
    path = cache_dir() / "footprint" / f"{calibration_key('framework', device)}.json"
    if path.is_file():
        try:
            return int(json.loads(path.read_text())["pss_bytes"])
        except (ValueError, KeyError, TypeError):
            pass  # damaged: measure again
    footprint = int(
        run_probe(_FOOTPRINT_PROBE, what="import torch and yolov5 to measure the framework's footprint")
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pss_bytes": footprint}) + "\n")
    return footprint


_CUDA_PROBE = "import torch; result(torch.cuda.device_count())"


def check_device(device: str) -> None:
    """Checks that ``device`` (``cpu``, or CUDA indices such as ``0`` or ``0,1``) exists here.

    The CUDA count comes from a child process, so that the caller never imports torch.

    Raises:
        InputError: For a malformed device, a CUDA index this machine does not have, or a torch that
            cannot be imported.
    """
    if device == "cpu":
        return
    indices = device.removeprefix("cuda:").split(",")
    if not all(index.strip().isdigit() for index in indices):
        raise InputError(f"device {device!r}: expected cpu, a CUDA index such as 0, or indices such as 0,1")
    count = int(run_probe(_CUDA_PROBE, what="import torch to count the CUDA devices"))
    missing = [index.strip() for index in indices if int(index) >= count]
    if missing:
        raise InputError(
            f"device {device}: CUDA device {missing[0]} does not exist here ({count} CUDA devices visible)"
        )
