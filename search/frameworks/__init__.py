"""The training frameworks a study can search: yolov5 (the default) and ultralytics.

Each framework is a :class:`Framework` (what the search asks of it, without importing it) and a
child module under :mod:`search.child` (what trains). :func:`resolve_framework` is the one rule for
which framework a study or trial uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from search._lazy import lazy_exports

if TYPE_CHECKING:
    from search.frameworks._base import MODEL_YAML_SUFFIXES, Framework
    from search.frameworks._registry import (
        DEFAULT_FRAMEWORK,
        FRAMEWORK_NAMES,
        get_framework,
        infer_framework,
        resolve_framework,
        with_framework_and_model,
    )

__all__ = [
    "DEFAULT_FRAMEWORK",
    "FRAMEWORK_NAMES",
    "MODEL_YAML_SUFFIXES",
    "Framework",
    "get_framework",
    "infer_framework",
    "resolve_framework",
    "with_framework_and_model",
]
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "MODEL_YAML_SUFFIXES": "search.frameworks._base",
        "Framework": "search.frameworks._base",
        "DEFAULT_FRAMEWORK": "search.frameworks._registry",
        "FRAMEWORK_NAMES": "search.frameworks._registry",
        "get_framework": "search.frameworks._registry",
        "infer_framework": "search.frameworks._registry",
        "resolve_framework": "search.frameworks._registry",
        "with_framework_and_model": "search.frameworks._registry",
    },
)
