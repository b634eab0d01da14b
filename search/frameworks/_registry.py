"""The frameworks memfront can search, and which one a model belongs to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from search.errors import InputError
from search.frameworks._base import Framework
from search.frameworks._ultralytics import Ultralytics
from search.frameworks._yolov5 import YOLOv5

__all__ = [
    "DEFAULT_FRAMEWORK",
    "FRAMEWORK_NAMES",
    "get_framework",
    "infer_framework",
    "resolve_framework",
    "with_framework_and_model",
]

# In this order: a bare name both ship (yolov5n.yaml) is yolov5's, the default.
_FRAMEWORKS: dict[str, Framework] = {f.name: f for f in (YOLOv5(), Ultralytics())}
FRAMEWORK_NAMES = tuple(_FRAMEWORKS)
DEFAULT_FRAMEWORK = "yolov5"


def get_framework(name: str) -> Framework:
    """The framework of that name.

    Raises:
        InputError: For a name memfront does not know.
    """
    try:
        return _FRAMEWORKS[name]
    except KeyError:
        raise InputError(f"framework must be one of {', '.join(FRAMEWORK_NAMES)}: {name!r}") from None


def infer_framework(model: str) -> str:
    """The framework a model yaml or checkpoint belongs to (yolov5 when nothing says otherwise).

    A file is read (a yaml's anchors, a checkpoint's pickled module names); a bare name is looked up
    among the yamls each framework ships.
    """
    path = Path(model).expanduser()
    if path.is_file():
        return next((f.name for f in _FRAMEWORKS.values() if f.owns_model_file(path)), DEFAULT_FRAMEWORK)
    if path.parent == Path("."):
        return next((f.name for f in _FRAMEWORKS.values() if f.shipped_model(path.name)), DEFAULT_FRAMEWORK)
    return DEFAULT_FRAMEWORK


def resolve_framework(framework: str | None, model: str | None) -> tuple[str, str]:
    """The (framework, model) a study or trial trains, from what the user gave of them.

    The one rule: a framework named without a model trains its default model; a model without a
    framework trains with the framework it belongs to; neither is yolov5's default.

    Raises:
        InputError: For an unknown framework name.
    """
    if framework is not None:
        chosen = get_framework(framework)
        return chosen.name, model or chosen.default_model
    if model is None:
        return DEFAULT_FRAMEWORK, get_framework(DEFAULT_FRAMEWORK).default_model
    return infer_framework(model), model


def with_framework_and_model(data: Any) -> Any:
    """A study file's or trial config's raw fields with ``framework`` and ``model`` resolved by
    :func:`resolve_framework` (the ``mode="before"`` validator of both)."""
    given = (data.get("framework"), data.get("model")) if isinstance(data, dict) else ()
    # Anything but text or nothing is left to the field's own check ("model: 5" is a type error).
    if given and all(value is None or isinstance(value, str) for value in given):
        framework, model = resolve_framework(*given)
        data = {**data, "framework": framework, "model": model}
    return data
