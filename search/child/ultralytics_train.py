"""ultralytics' own training (``YOLO(model).train(...)``) in the trial's child, and what it reports.

Run by :mod:`search.child.trainer` for a spec whose framework is ultralytics; its adaptations are in
:mod:`search.child.ultralytics_compat`. Writes the same events as :mod:`search.child.yolov5_train`,
so that records, limits, probes and reports do not depend on the framework. ``used`` says what
ultralytics really ran: it rounds imgsz to its stride, drops a RAM cache its own check finds too
large, and runs no dataloader worker on a CPU.
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
    only_visible_device,
    write_cuda_oom,
    write_end,
    write_start,
)

__all__ = ["run"]

_METRIC_KEYS = {
    "precision": "metrics/precision(B)",
    "recall": "metrics/recall(B)",
    "map50": "metrics/mAP50(B)",
    "map50_95": "metrics/mAP50-95(B)",
}


def _hyp_settings(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    import yaml

    content = yaml.safe_load(Path(path).read_text())
    return dict(content) if isinstance(content, dict) else {}


def run(spec: dict[str, Any], events: EventWriter) -> int:
    """Trains as the spec says; returns the exit code."""
    from search.child import ultralytics_compat as compat

    folder = Path(spec["project"])
    # Before torch initialises CUDA: ultralytics never narrows the GPUs, and its dataloaders give each
    # visible GPU cpu_count // device_count workers (the memory model counts the trial's one).
    narrowed = only_visible_device(spec["device"])
    import torch
    import ultralytics
    from ultralytics import YOLO
    from ultralytics.engine import trainer as engine_trainer
    from ultralytics.models.yolo.detect import DetectionTrainer

    compat.quiet_settings(folder / "ultralytics")
    compat.prepare_fonts()
    compat.redirect_label_caches(folder / "label-caches")
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
        compat.keep_threads(int(spec["threads"]))
    torch_device, ultralytics_device = compat.trial_device(
        spec["device"], narrowed=narrowed, cuda=torch.cuda.is_available()
    )
    device = torch.device(torch_device)
    cuda = device.type == "cuda"
    amp, amp_reason = compat.decide_amp(requested=spec["amp"], cuda=cuda)
    compat.patch_amp(engine_trainer, amp)
    cap_gpu_memory(torch, device, spec.get("gpu_memory_limit_bytes"))
    write_start(events, torch, device, versions={"ultralytics": ultralytics.__version__})

    probe = spec.get("probe")
    probe_end = ProbeEnd(events, probe)
    bounded: dict[str, Any] = {}

    class MeasuredTrainer(DetectionTrainer):
        """ultralytics' detection trainer, whose loaders say when they are built (and a probe bounds)."""

        def get_dataloader(
            self, dataset_path: str, batch_size: int = 16, rank: int = 0, mode: str = "train"
        ) -> Any:
            which = "train" if mode == "train" else "val"
            # Scanning the labels and building the cache (ram or disk) happen here, for each split.
            events.write("phase", phase="cache", split=which)
            loader = super().get_dataloader(dataset_path, batch_size, rank, mode)
            if probe is None:
                return loader
            from search.child.probe import bound_for_probe

            loop = bound_for_probe(loader, probe, which)
            if loop is None:
                return loader  # the whole pass
            bounded[which] = loop
            return loop

    timing: dict[str, float] = {}
    trained: set[int] = set()
    validations = {"passes": 0}

    def on_train_start(trainer: Any) -> None:
        train_set = trainer.train_loader.dataset
        val_set = trainer.test_loader.dataset if trainer.test_loader is not None else None
        cache_used = {"ram": "ram", "disk": "disk"}.get(str(getattr(train_set, "cache", None)), "none")
        events.write(
            "used",
            batch=int(trainer.batch_size),
            imgsz=int(trainer.args.imgsz),
            workers=int(trainer.train_loader.num_workers),
            val_workers=int(trainer.test_loader.num_workers) if trainer.test_loader is not None else None,
            cache=cache_used,
            cache_dropped=spec["cache"] != "none" and cache_used == "none",
            amp=bool(trainer.amp),
            amp_reason=amp_reason,
            device=str(trainer.device),
            train_images=len(train_set),
            val_images=len(val_set) if val_set is not None else None,
            epochs=spec["epochs"],
        )

    def on_train_epoch_start(trainer: Any) -> None:
        probe_end.saved()
        compat.no_oom_retries(trainer)
        timing["epoch_start"] = clock()
        events.write("phase", phase="training")

    def on_train_epoch_end(trainer: Any) -> None:
        timing["train_end"] = clock()
        trained.add(int(trainer.epoch))

    def on_val_start(validator: Any) -> None:
        # Each epoch's pass, and the last one over best.pt after the final epoch.
        validations["passes"] += 1
        events.write("phase", phase="validation", split=f"pass {validations['passes']}")

    def on_val_end(validator: Any) -> None:
        # ultralytics saves its checkpoints between validation and on_fit_epoch_end: an epoch's time
        # ends here, as yolov5's does, and a probe's last pass is measured here.
        now = timing["val_end"] = clock()
        if not trained:
            return  # the final validation of best.pt: no checkpoint follows
        total = len(validator.dataloader) if validator.dataloader is not None else 0
        probe_end.validated(
            validations["passes"],
            val_batches=total,
            val_seconds=now - timing.get("train_end", now),
            bounded=bounded,
        )
        events.write("phase", phase="checkpoint")

    def on_model_save(trainer: Any) -> None:
        probe_end.saved()

    def on_fit_epoch_end(trainer: Any) -> None:
        epoch = int(trainer.epoch)
        if epoch not in trained:
            return  # the final validation of best.pt, which ultralytics reports as one more epoch
        trained.discard(epoch)
        now = timing.pop("val_end", clock())  # this epoch's validation, if it validated
        metrics = {name: float(trainer.metrics.get(key, 0.0)) for name, key in _METRIC_KEYS.items()}
        losses = trainer.label_loss_items(trainer.tloss) if trainer.tloss is not None else {}
        events.write(
            "epoch",
            epoch=epoch,
            **metrics,
            fitness=float(trainer.fitness) if trainer.fitness is not None else metrics["map50_95"],
            **{k.replace("train/", ""): float(v) for k, v in losses.items()},
            **{k.replace("/", "_"): float(v) for k, v in trainer.metrics.items() if k.startswith("val/")},
            seconds=now - timing.get("epoch_start", now),
            train_seconds=timing.get("train_end", now) - timing.get("epoch_start", now),
            gpu=gpu_peaks(torch, device),
        )

    model = YOLO(spec["model"])
    for name, callback in (
        ("on_train_start", on_train_start),
        ("on_train_epoch_start", on_train_epoch_start),
        ("on_train_epoch_end", on_train_epoch_end),
        ("on_val_start", on_val_start),
        ("on_val_end", on_val_end),
        ("on_fit_epoch_end", on_fit_epoch_end),
        ("on_model_save", on_model_save),
    ):
        model.add_callback(name, callback)
    settings = {
        **_hyp_settings(spec.get("hyp")),
        "data": spec["data"],
        "epochs": spec["epochs"],
        "batch": spec["batch"],
        "imgsz": spec["imgsz"],
        "cache": False if spec["cache"] == "none" else spec["cache"],
        "workers": spec["workers"],
        "device": ultralytics_device,
        "seed": spec["seed"],
        "amp": spec["amp"],
        "project": str(folder),
        "name": spec["name"],
        "exist_ok": True,
        "plots": not spec.get("noplots", True),
        "val": not spec.get("noval", False),
    }
    if spec.get("optimizer"):
        settings["optimizer"] = spec["optimizer"]
    try:
        model.train(trainer=MeasuredTrainer, **settings)
    except ProbeDone:
        pass
    except RuntimeError as error:
        if not is_cuda_oom(torch, error):
            raise
        write_cuda_oom(events, torch, device, error)
        return EXIT_CUDA_OOM
    write_end(events, torch, device, save_dir=str(folder / spec["name"]))
    return 0
