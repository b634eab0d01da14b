"""The trial's child process: runs yolov5's own training and reports what happened.

Started by :mod:`search.trial._supervisor` as ``python -m search.child.trainer SPEC.json``. This is the only
module of memfront (with :mod:`search.child.compat`) that imports torch or yolov5. It writes one JSON
object a line to the events file named in the spec; the parent reads them for progress and for
the trial's record.

A spec with a ``probe`` section runs a probe instead of a training: one epoch on the whole
dataset, its train and val loops bounded by :mod:`search.child.probe`, ended after validation.

Exit codes: 0 trained (or probed); 1 failed (traceback in the log); 3 CUDA out of memory.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

EXIT_FAILED = 1
EXIT_CUDA_OOM = 3


class ProbeDone(Exception):
    """Raised after a probe's validation: the probe ends before yolov5 saves a checkpoint."""


class EventWriter:
    """Appends JSON events to a file, one a line, flushed at once."""

    def __init__(self, path: str) -> None:
        self._handle = open(path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process

    def write(self, event: str, **fields: Any) -> None:
        """Writes one event."""
        self._handle.write(json.dumps({"event": event, "time": time.time(), **fields}) + "\n")
        self._handle.flush()


def _raise_oom_score() -> None:
    # If the kernel must kill something, it should be the trial, not the search; workers inherit it.
    with contextlib.suppress(OSError):
        Path("/proc/self/oom_score_adj").write_text("1000")


def _die_with_parent(parent_pid: int | None) -> None:
    # The child runs in its own session, so a search killed with SIGKILL would leave it running:
    # ask the kernel to kill it with its parent (dataloader workers notice their manager's death).
    if parent_pid is None or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(EXIT_FAILED)


def _vmhwm_bytes() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _gpu_peaks(torch: Any, device: Any) -> dict[str, int | None]:
    if device.type != "cuda":
        return {"reserved_peak_bytes": None, "allocated_peak_bytes": None}
    return {
        "reserved_peak_bytes": int(torch.cuda.max_memory_reserved(device)),
        "allocated_peak_bytes": int(torch.cuda.max_memory_allocated(device)),
    }


def model_options(model: str) -> dict[str, str]:
    """yolov5's ``cfg`` and ``weights`` for a model: a yaml trains from scratch, a ``.pt`` fine-tunes."""
    from search.child.compat import MODEL_YAML_SUFFIXES

    from_scratch = Path(model).suffix in MODEL_YAML_SUFFIXES
    return {"cfg": model if from_scratch else "", "weights": "" if from_scratch else model}


def run(spec: dict[str, Any], events: EventWriter) -> int:
    """Trains as the spec says; returns the exit code."""
    from search.child import compat

    compat.prepare_config_dir(Path(spec["config_dir"]))
    compat.isolate_argv()
    compat.patch_numpy()

    import torch
    import yolov5
    from yolov5 import train as yolo_train
    from yolov5.utils.callbacks import Callbacks
    from yolov5.utils.torch_utils import select_device

    if spec.get("threads"):
        # Jobs sharing a CPU: each trial keeps to its share (yolov5 sets OMP_NUM_THREADS only after
        # torch has read it).
        torch.set_num_threads(int(spec["threads"]))
    device = select_device(spec["device"], batch_size=spec["batch"])
    cuda = device.type == "cuda"
    amp, amp_reason = compat.decide_amp(requested=spec["amp"], cuda=cuda)
    compat.patch_amp(yolo_train, amp)
    gpu_limit = spec.get("gpu_memory_limit_bytes")
    if cuda and gpu_limit:
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, gpu_limit / total), device)
    events.write(
        "start",
        pid=os.getpid(),
        torch=torch.__version__,
        yolov5=getattr(yolov5, "__version__", None),
        device=str(device),
        cuda=cuda,
        gpu_name=torch.cuda.get_device_name(device) if cuda else None,
        gpu_total_bytes=torch.cuda.get_device_properties(device).total_memory if cuda else None,
    )

    loaders: list[tuple[Any, Any]] = []
    original_create = yolo_train.create_dataloader
    probe = spec.get("probe")
    bounded: dict[str, Any] = {}

    def create_dataloader(*args: Any, **kwargs: Any) -> Any:
        which = "train" if not loaders else "val"
        # Scanning the labels and building the cache (ram or disk) happen here, for each split.
        events.write("phase", phase="cache", split=which)
        made = original_create(*args, **kwargs)
        loaders.append((made[0], made[1]))
        if probe is None:
            return made
        from search.child.probe import BoundedLoader, PlateauRule

        peak_file = Path(probe["peak_file"]) if probe.get("peak_file") else None
        least, most = probe[f"{which}_min_batches"], probe[f"{which}_max_batches"]
        if most is None:
            return made  # the whole pass
        rule = PlateauRule.for_workers(int(made[0].num_workers), least=least, most=most, peak_file=peak_file)
        bounded[which] = BoundedLoader(made[0], rule)
        return (bounded[which], *made[1:])

    yolo_train.create_dataloader = create_dataloader

    timing: dict[str, float] = {}

    def on_train_start() -> None:
        train_loader, train_set = loaders[0]
        val_set = loaders[1][1] if len(loaders) > 1 else None
        cached_ram = any(im is not None for im in train_set.ims)
        cached_disk = spec["cache"] == "disk" and all(p.exists() for p in train_set.npy_files)
        cache_used = "ram" if cached_ram else "disk" if cached_disk else "none"
        events.write(
            "used",
            batch=int(train_loader.batch_size),
            imgsz=int(train_set.img_size),
            workers=int(train_loader.num_workers),
            val_workers=int(loaders[1][0].num_workers) if len(loaders) > 1 else None,
            cache=cache_used,
            cache_dropped=spec["cache"] != "none" and cache_used == "none",
            amp=amp,
            amp_reason=amp_reason,
            device=str(device),
            train_images=len(train_set),
            val_images=len(val_set) if val_set is not None else None,
            epochs=spec["epochs"],
        )
        events.write("phase", phase="training")
        timing["epoch_start"] = time.monotonic()

    validations = {"passes": 0}

    def on_train_epoch_start() -> None:
        timing["epoch_start"] = time.monotonic()
        if validations["passes"]:
            events.write("phase", phase="training")

    def on_train_epoch_end(epoch: int) -> None:
        timing["train_end"] = time.monotonic()

    def on_val_start() -> None:
        # Each epoch's pass, and yolov5's last one over best.pt after the final epoch.
        validations["passes"] += 1
        events.write("phase", phase="validation", split=f"pass {validations['passes']}")

    def on_fit_epoch_end(log_vals: list[Any], epoch: int, best_fitness: Any, fi: Any) -> None:
        now = time.monotonic()
        values = [float(v) for v in log_vals[:10]]
        box, obj, cls, precision, recall, map50, map50_95, vbox, vobj, vcls = values
        events.write(
            "epoch",
            epoch=int(epoch),
            precision=precision,
            recall=recall,
            map50=map50,
            map50_95=map50_95,
            fitness=float(fi[0]) if hasattr(fi, "__len__") else float(fi),
            box_loss=box,
            obj_loss=obj,
            cls_loss=cls,
            val_box_loss=vbox,
            val_obj_loss=vobj,
            val_cls_loss=vcls,
            seconds=now - timing.get("epoch_start", now),
            train_seconds=timing.get("train_end", now) - timing.get("epoch_start", now),
            gpu=_gpu_peaks(torch, device),
        )
        if probe is not None:
            total = len(loaders[1][0]) if len(loaders) > 1 else 0
            seconds = now - timing.get("train_end", now)  # the pass and its metrics
            validation = {
                "batches": total, "batches_total": total, "seconds": seconds,
                "seconds_per_batch": seconds / total if total else None, "stop_reason": "whole pass",
            }  # fmt: skip
            loops = {"val": validation, **{split: loop.summary() for split, loop in bounded.items()}}
            events.write("probe", **loops)
            raise ProbeDone

    callbacks = Callbacks()  # fresh: yolov5's default argument is shared between runs
    callbacks.register_action("on_train_start", callback=on_train_start)
    callbacks.register_action("on_train_epoch_start", callback=on_train_epoch_start)
    callbacks.register_action("on_train_epoch_end", callback=on_train_epoch_end)
    callbacks.register_action("on_val_start", callback=on_val_start)
    callbacks.register_action("on_fit_epoch_end", callback=on_fit_epoch_end)

    opt = yolo_train.parse_opt(True)
    overrides = {
        "data": spec["data"],
        **model_options(spec["model"]),
        "epochs": spec["epochs"],
        "batch_size": spec["batch"],
        "imgsz": spec["imgsz"],
        "cache": None if spec["cache"] == "none" else spec["cache"],
        "workers": spec["workers"],
        "device": spec["device"],
        "seed": spec["seed"],
        "project": spec["project"],
        "name": spec["name"],
        "exist_ok": True,
        "noplots": spec.get("noplots", True),
        "noval": spec.get("noval", False),
    }
    if spec.get("hyp"):
        overrides["hyp"] = spec["hyp"]
    if spec.get("optimizer"):
        overrides["optimizer"] = spec["optimizer"]
    for key, value in overrides.items():
        setattr(opt, key, value)
    try:
        yolo_train.main(opt, callbacks=callbacks)
    except ProbeDone:
        pass
    except torch.cuda.OutOfMemoryError as error:
        events.write("error", kind="cuda_oom", message=str(error).splitlines()[0])
        return EXIT_CUDA_OOM
    events.write(
        "end",
        vmhwm_bytes=_vmhwm_bytes(),
        gpu=_gpu_peaks(torch, device),
        save_dir=str(Path(spec["project"]) / spec["name"]),
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the child process."""
    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(args[0]).read_text())
    _die_with_parent(spec.get("parent_pid"))
    _raise_oom_score()
    events = EventWriter(spec["events"])
    try:
        return run(spec, events)
    except BaseException as error:
        traceback.print_exc()
        sys.stderr.flush()
        message = "".join(traceback.format_exception_only(type(error), error)).strip()
        events.write("error", kind="exception", message=message.splitlines()[-1] if message else "")
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
