"""Short measurements in a child process (torch's CUDA count, the framework's footprint, ...).

The parent never imports torch or yolov5: what it needs to know of them, a child measures. The
child's answer travels in a file of its own, never in its stdout, which also carries whatever
third-party packages print on import.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from search.child import compat
from search.errors import TrialError

__all__ = ["run_snippet"]

# ultralytics, for one, announces a new settings file on stdout on a machine's first run.
_SNIPPET_WRAPPER = """\
import json, os, sys, traceback
path = os.environ["MEMFRONT_SNIPPET_RESULT"]
def result(value):
    with open(path, "w") as handle:
        json.dump({"value": value}, handle)
try:
    exec(compile(sys.argv[1], "<memfront snippet>", "exec"), {"result": result})
except BaseException as error:
    with open(path, "w") as handle:
        json.dump({"error": "".join(traceback.format_exception_only(type(error), error)).strip()}, handle)
    sys.exit(1)
"""


def run_snippet(code: str, *, what: str, timeout_s: float = 300) -> Any:
    """Runs ``code`` in a child Python process and returns the value it passed to ``result(value)``.

    The child gets the same private settings folders as a trial
    (:func:`search.child.compat.child_environment`), so it writes nothing into the user's home and
    behaves the same on a first run as on later ones.

    Args:
        code: Python source; it calls ``result(value)`` with a JSON-ready value.
        what: What the snippet measures, for the error message.
        timeout_s: Seconds before the snippet is killed.

    Raises:
        TrialError: If the snippet fails, hangs or returns nothing; the message names the child's error.
    """
    with tempfile.TemporaryDirectory(prefix="memfront-snippet-") as tmp:
        folder = Path(tmp)
        result_path = folder / "result.json"
        log_path = folder / "snippet.log"
        env = {
            **compat.child_process_environment(folder / "settings"),
            "MEMFRONT_SNIPPET_RESULT": str(result_path),
        }
        try:
            with open(log_path, "wb") as log:
                subprocess.run(
                    [sys.executable, "-c", _SNIPPET_WRAPPER, code],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=folder,
                    timeout=timeout_s, check=False,
                )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise TrialError(
                f"cannot {what}: the measuring child did not finish within {timeout_s:.0f} s"
            ) from None
        try:
            answer = json.loads(result_path.read_text())
        except (OSError, ValueError):
            lines = log_path.read_text(errors="replace").strip().splitlines() if log_path.is_file() else []
            raise TrialError(
                f"cannot {what}: the measuring child ended with no result ({(lines or ['no output'])[-1]})"
            ) from None
    if "error" in answer:
        raise TrialError(f"cannot {what}: {answer['error'].splitlines()[-1]}")
    return answer["value"]
