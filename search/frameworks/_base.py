"""What memfront needs to know of a training framework, on the search's side.

A :class:`Framework` answers every question the parent asks of a framework without importing it
(no torch, no YOLO package): which models it trains, where its model yamls and demo
hyperparameters are, how many dataloader processes it really starts, which versions identify it,
how its own command line trains a config, and which module of :mod:`search.child` runs a trial.
The child module (config in, events out) is the other half; adding a framework is one subclass
here, one child module, and a line in :mod:`search.frameworks._registry`.
"""

from __future__ import annotations

import abc
import importlib.metadata
import importlib.util
from pathlib import Path
from typing import Any

from search.child.compat import MODEL_YAML_SUFFIXES
from search.errors import InputError

__all__ = ["MODEL_YAML_SUFFIXES", "Framework", "check_device_text", "package_folder", "package_version"]


def check_device_text(device: str) -> None:
    """Raises :class:`InputError` unless ``device`` reads as ``cpu``, a CUDA index (``0``, ``cuda:0``)
    or indices (``0,1``); whether those exist here is :func:`search.measure.check_device`'s."""
    if device == "cpu":
        return
    indices = device.removeprefix("cuda:").split(",")
    if not all(index.strip().isdigit() for index in indices):
        raise InputError(f"device {device!r}: expected cpu, a CUDA index such as 0, or indices such as 0,1")


def package_folder(name: str) -> Path | None:
    """The installed package's folder, found without importing it (the parent stays free of torch)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def package_version(name: str) -> str:
    """The installed distribution's version, or ``none``."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "none"


class Framework(abc.ABC):
    """One training framework as the search sees it.

    Attributes:
        name: The study file's ``framework`` value.
        package: The distribution that trains (its version identifies calibrations and probes).
        default_model: The model a study or trial trains when it names none.
        child_module: The module under :mod:`search.child` whose ``run(spec, events)`` trains.
        import_line: What a child imports to train (the framework footprint measures it).
        system_knobs: The knobs that change memory and speed but not what the network sees (so
            trainings that differ only in them measure one accuracy config).
        skips_unknown_classes: Whether an image whose label has a class id not below the data
            yaml's class count is dropped with a warning (True) or fails the training (False).
        label_cache_files: Where its child leaves the label caches it writes, as globs relative
            to the trial's folder (:mod:`search.data._label_caches` keeps them between trials).
    """

    name: str
    package: str
    default_model: str
    child_module: str
    import_line: str
    system_knobs: tuple[str, ...] = ("cache", "workers")
    skips_unknown_classes: bool = False
    label_cache_files: tuple[str, ...] = ()

    def versions(self) -> dict[str, str]:
        """The software a measurement is valid for: torch and the framework."""
        return {"torch": package_version("torch"), self.package: package_version(self.package)}

    def resolve_model(self, model: str) -> str:
        """The model as the child must be given it, never downloading one.

        Raises:
            InputError: If the model is neither an existing yaml (file or shipped) nor a local ``.pt``.
        """
        path = Path(model).expanduser()
        if path.suffix not in (*MODEL_YAML_SUFFIXES, ".pt"):
            raise InputError(f"model must be a .yaml (train from scratch) or a local .pt: {model!r}")
        if path.is_file():
            return str(path.resolve())
        if path.suffix == ".pt":
            raise InputError(f"model checkpoint not found: {model} (memfront never downloads weights)")
        if path.parent == Path("."):
            shipped = self.shipped_model(path.name)
            if shipped is not None:
                return shipped
        raise InputError(f"model yaml not found: {model} (neither a file nor one of {self.name}'s models)")

    @abc.abstractmethod
    def shipped_model(self, name: str) -> str | None:
        """How the child names a model yaml the framework ships (None: it ships none of that name)."""

    @abc.abstractmethod
    def owns_model_file(self, path: Path) -> bool:
        """Whether an existing model yaml or checkpoint is one of this framework's."""

    @abc.abstractmethod
    def demo_hyp(self) -> Path:
        """memfront's demo hyperparameters in this framework's format."""

    @abc.abstractmethod
    def check_device(self, device: str) -> None:
        """Raises :class:`InputError` for a device string a trial of this framework cannot train on."""

    @abc.abstractmethod
    def check_hyp(self, path: Path) -> None:
        """Raises :class:`InputError` if the hyperparameter yaml cannot be this framework's."""

    @abc.abstractmethod
    def loader_workers(self, workers: int, batch: int, *, device: str, cpus: int) -> tuple[int, int]:
        """Dataloader processes the framework really starts: (train, validation)."""

    @abc.abstractmethod
    def upstream_command(self, options: dict[str, Any]) -> str:
        """The framework's own command line for a full training with these options."""
