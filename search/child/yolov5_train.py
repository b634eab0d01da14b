"""yolov5's own training in the trial's child, and what it reports of itself.

Run by :mod:`search.child.trainer` for a spec whose framework is yolov5; every adaptation of yolov5
7.0.14 to today's stack is in :mod:`search.child.compat`. Writes the events of
:mod:`search.child._common`'s :class:`EventWriter`: ``start``, ``phase``, ``used``, ``epoch``,
``probe``, ``end``, ``error``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from search._pause import clock
from search.child._common import (
    EXIT_CUDA_OOM,
    EventWriter,
    ProbeDone,
    ProbeEnd,
    cap_gpu_memory,
    gpu_peaks,
    is_cuda_oom,
    write_cuda_oom,
    write_end,
    write_start,
)

__all__ = ["model_options", "run"]


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
    yolo_device = compat.narrow_visible_devices(spec["device"])
    device = select_device(yolo_device, batch_size=spec["batch"])
    if spec["device"] not in ("cpu", "mps") and device.type != "cuda":
        # yolov5 given "" falls back to the CPU where CUDA is missing: not what was asked for.
        raise RuntimeError(f"CUDA device {spec['device']} is not available in the trial's process")
    cuda = device.type == "cuda"
    amp, amp_reason = compat.decide_amp(requested=spec["amp"], cuda=cuda)
    compat.patch_amp(yolo_train, amp)
    compat.patch_hub()
    cap_gpu_memory(torch, device, spec.get("gpu_memory_limit_bytes"))
    write_start(events, torch, device, versions={"yolov5": getattr(yolov5, "__version__", None)})

    loaders: list[tuple[Any, Any]] = []
    original_create = yolo_train.create_dataloader
    probe = spec.get("probe")
    probe_end = ProbeEnd(events, probe)
    bounded: dict[str, Any] = {}

    def create_dataloader(*args: Any, **kwargs: Any) -> Any:
        which = "train" if not loaders else "val"
        # Scanning the labels and building the cache (ram or disk) happen here, for each split.
        events.write("phase", phase="cache", split=which)
        made = original_create(*args, **kwargs)
        loaders.append((made[0], made[1]))
        if probe is None:
            return made
        from search.child.probe import bound_for_probe

        loop = bound_for_probe(made[0], probe, which)
        if loop is None:
            return made  # the whole pass
        bounded[which] = loop
        return (loop, *made[1:])

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
        timing["epoch_start"] = clock()

    validations = {"passes": 0}

    def on_train_epoch_start() -> None:
        probe_end.saved()
        timing["epoch_start"] = clock()
        if "fit_end" in timing:  # the first epoch's training phase began at on_train_start
            events.write("phase", phase="training")

    def on_train_epoch_end(epoch: int) -> None:
        timing["train_end"] = clock()

    def on_val_start() -> None:
        # Each epoch's pass, and yolov5's last one over best.pt after the final epoch.
        validations["passes"] += 1
        events.write("phase", phase="validation", split=f"pass {validations['passes']}")

    def on_fit_epoch_end(log_vals: list[Any], epoch: int, best_fitness: Any, fi: Any) -> None:
        now = timing["fit_end"] = clock()
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
            gpu=gpu_peaks(torch, device),
        )
        total = len(loaders[1][0]) if len(loaders) > 1 else 0
        probe_end.validated(
            validations["passes"],
            val_batches=total,
            val_seconds=now - timing.get("train_end", now),
            bounded=bounded,
        )
        events.write("phase", phase="checkpoint")  # yolov5 saves last.pt (and best.pt) next

    def on_model_save(*args: Any) -> None:
        probe_end.saved()

    callbacks = Callbacks()  # fresh: yolov5's default argument is shared between runs
    callbacks.register_action("on_train_start", callback=on_train_start)
    callbacks.register_action("on_train_epoch_start", callback=on_train_epoch_start)
    callbacks.register_action("on_train_epoch_end", callback=on_train_epoch_end)
    callbacks.register_action("on_val_start", callback=on_val_start)
    callbacks.register_action("on_fit_epoch_end", callback=on_fit_epoch_end)
    callbacks.register_action("on_model_save", callback=on_model_save)

    opt = yolo_train.parse_opt(True)
    overrides = {
        "data": spec["data"],
        **model_options(spec["model"]),
        "epochs": spec["epochs"],
        "batch_size": spec["batch"],
        "imgsz": spec["imgsz"],
        "cache": None if spec["cache"] == "none" else spec["cache"],
        "workers": spec["workers"],
        "device": yolo_device,
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
    except RuntimeError as error:
        if not is_cuda_oom(torch, error):
            raise
        write_cuda_oom(events, torch, device, error)
        return EXIT_CUDA_OOM
    write_end(events, torch, device, save_dir=str(Path(spec["project"]) / spec["name"]))
    return 0
