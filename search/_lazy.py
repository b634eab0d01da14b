"""Public names of a package, imported on first use (PEP 562).

memfront's packages depend on each other (a study runs trials, a trial's limit checks the memory
model...). Their ``__init__`` modules name what is public without importing it, so that importing
one private module never runs the others' and no import cycle can form; and the trial's child, a
module of this package, imports nothing it does not use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, names: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's ``__getattr__`` and ``__dir__`` for ``names`` (public name -> module holding it)."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(names[name]), name)

    def __dir__() -> list[str]:
        return sorted(names)

    return __getattr__, __dir__
