"""The configuration of one trial, validated before anything runs."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from search.child.compat import MODEL_YAML_SUFFIXES
from search.errors import InputError

__all__ = [
    "CACHE_MODES",
    "TrialConfig",
    "TrialLimits",
    "resolve_hyp",
    "resolve_model",
    "validation_message",
]

CACHE_MODES = ("none", "ram", "disk")


class TrialConfig(BaseModel):
    """What one trial trains: the memory knobs and the run settings.

    The five knobs the search varies are ``batch``, ``imgsz``, ``cache``, ``workers`` and ``amp``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: str = Field(description="YOLOv5 data yaml")
    model: str = Field("yolov5n.yaml", description="model yaml (from scratch) or local .pt")
    batch: int = Field(16, gt=0)
    imgsz: int = Field(640, gt=0)
    cache: Literal["none", "ram", "disk"] = "none"
    workers: int = Field(0, ge=0)
    amp: bool = False
    epochs: int = Field(1, gt=0)
    device: str = "cpu"
    seed: int = 0
    train_images: int | None = Field(None, gt=0)
    train_fraction: float | None = Field(None, gt=0, le=1)
    hyp: str | None = Field(None, description="yolov5 hyperparameter yaml, or 'demo'; default scratch-low")
    threads: int | None = Field(None, gt=0, description="torch CPU threads; default torch's own (all cores)")

    def knobs(self) -> dict[str, Any]:
        """The searched knobs as a plain mapping."""
        return {k: getattr(self, k) for k in ("batch", "imgsz", "cache", "workers", "amp")}


class TrialLimits(BaseModel):
    """What a trial may use before the supervisor stops it. None means no limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    memory_limit_bytes: int | None = Field(None, gt=0)
    gpu_memory_limit_bytes: int | None = Field(None, gt=0)
    time_limit_s: float | None = Field(None, gt=0)


def validation_message(error: ValidationError) -> str:
    """One line naming the first bad field of a pydantic error."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "value"
    return f"{where}: {first['msg']}"


def resolve_model(model: str) -> str:
    """Returns the absolute path of a model yaml or checkpoint, never downloading one.

    A bare yaml name such as ``yolov5n.yaml`` is looked up among the model yamls shipped in the
    yolov5 package (found without importing it, so that the parent stays free of torch).

    Raises:
        InputError: If the model is neither an existing ``.yaml`` nor an existing ``.pt``.
    """
    path = Path(model).expanduser()
    if path.suffix not in (*MODEL_YAML_SUFFIXES, ".pt"):
        raise InputError(f"model must be a .yaml (train from scratch) or a local .pt: {model!r}")
    if path.is_file():
        return str(path.resolve())
    if path.suffix == ".pt":
        raise InputError(f"model checkpoint not found: {model} (memfront never downloads weights)")
    spec = importlib.util.find_spec("yolov5")
    if spec is not None and spec.submodule_search_locations and path.parent == Path("."):
        shipped = Path(next(iter(spec.submodule_search_locations))) / "models" / path.name
        if shipped.is_file():
            return str(shipped)
    raise InputError(f"model yaml not found: {model} (neither a file nor one of yolov5's models)")


def resolve_hyp(hyp: str | None) -> str | None:
    """Returns the absolute path of a hyperparameter yaml; ``demo`` is memfront's own.

    Raises:
        InputError: If the file does not exist.
    """
    if hyp is None:
        return None
    if hyp == "demo":
        return str(Path(__file__).resolve().parents[1] / "hyps" / "demo.yaml")
    path = Path(hyp).expanduser()
    if not path.is_file():
        raise InputError(f"hyp yaml not found: {hyp}")
    return str(path.resolve())
