"""The trial's child process: runs a framework's own training and reports what happened.

Started by :mod:`search.trial._supervisor` as ``python -m search.child.trainer SPEC.json``. The spec
names the framework's child module (``search.child.yolov5_train``, ``search.child.ultralytics_train``),
whose ``run(spec, events)`` trains; these are the only modules of memfront that import torch or a
YOLO package. Each writes one JSON object a line to the events file named in the spec; the parent
reads them for progress and for the trial's record.

A spec with a ``probe`` section runs a probe instead of a training: one epoch on the whole
dataset, its train and val loops bounded by :mod:`search.child.probe`, ended after validation.

Exit codes: 0 trained (or probed); 1 failed (traceback in the log); 3 CUDA out of memory.
"""

from __future__ import annotations

import importlib
import json
import sys
import traceback
from pathlib import Path

from search._pause import follow_pauses
from search.child._common import EXIT_FAILED, EventWriter, die_with_parent, raise_oom_score

_DEFAULT_CHILD = "search.child.yolov5_train"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the child process."""
    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(args[0]).read_text())
    die_with_parent(spec.get("parent_pid"))
    raise_oom_score()
    if spec.get("pause_file"):
        follow_pauses(spec["pause_file"])
    events = EventWriter(spec["events"])
    try:
        trainer = importlib.import_module(spec.get("child_module") or _DEFAULT_CHILD)
        return int(trainer.run(spec, events))
    except BaseException as error:
        traceback.print_exc()
        sys.stderr.flush()
        message = "".join(traceback.format_exception_only(type(error), error)).strip()
        events.write("error", kind="exception", message=message.splitlines()[-1] if message else "")
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
