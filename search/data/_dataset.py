"""Reading and checking a YOLOv5 data yaml in the parent, without torch or yolov5.

Trials never train on the user's yaml directly: :func:`write_trial_data_yaml` writes a normalised
copy (absolute paths, no ``download`` script, optionally a subset of the training images) into the
trial's own folder. Paths in a user's yaml are resolved against the yaml's folder, which is what
users expect; yolov5 itself would resolve them against its package folder.
"""

from __future__ import annotations

import dataclasses
import os
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from search.errors import InputError

__all__ = [
    "IMAGE_SUFFIXES",
    "TRIAL_LISTS",
    "DatasetSpec",
    "label_file",
    "label_path",
    "load_dataset",
    "snapshot_cache_files",
    "write_trial_data_yaml",
]

TRIAL_LISTS = ("train.txt", "val.txt")
"""The image lists a trial's data yaml names, in the trial's folder (:func:`write_trial_data_yaml`)."""

# The suffixes yolov5 7.0's dataloader accepts (utils/dataloaders.py IMG_FORMATS).
IMAGE_SUFFIXES = frozenset(
    {".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp", ".pfm"}
)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """A checked dataset: its yaml, class names and the image files of each split."""

    yaml_path: Path
    names: dict[int, str]
    train_images: tuple[Path, ...]
    val_images: tuple[Path, ...]

    @property
    def all_images(self) -> tuple[Path, ...]:
        """Training then validation images."""
        return self.train_images + self.val_images


def label_path(image: Path) -> Path:
    """The label file yolov5 reads for an image (last ``/images/`` replaced by ``/labels/``)."""
    return Path(label_file(str(image)))


def label_file(image: str) -> str:
    """:func:`label_path` on strings: a check of every label makes one per image (431,000 in a
    large dataset), and a Path costs several microseconds to make."""
    sep_images, sep_labels = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return os.path.splitext(sep_labels.join(image.rsplit(sep_images, 1)))[0] + ".txt"


def _images_in(source: Path, key: str) -> list[Path]:
    if source.is_dir():
        # os.walk and a sort of strings by their parts (the order of Paths): 0.82 of the time of
        # Path.rglob and a sort of Paths (bench/scan_bench.py; making the Paths is most of the rest).
        found = [
            os.path.join(folder, name)
            for folder, _, names in os.walk(source)
            for name in names
            if os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES
        ]
        return [Path(text) for text in sorted(found, key=lambda text: text.split(os.sep))]
    if source.is_file() and source.suffix == ".txt":
        images = []
        for line in source.read_text(errors="replace").splitlines():
            line = line.strip()
            if not line:
                continue
            path = Path(line)
            if not path.is_absolute():
                path = source.parent / path
            if path.suffix.lower() in IMAGE_SUFFIXES:
                images.append(path.resolve())
        return images
    raise InputError(f"data yaml '{key}': {source} does not exist")


def _split(data: dict[str, Any], root: Path, key: str, yaml_path: Path) -> tuple[Path, ...]:
    entry = data.get(key)
    if not entry:
        raise InputError(f"data yaml {yaml_path} has no '{key}:' entry")
    entries = entry if isinstance(entry, list) else [entry]
    images: list[Path] = []
    for item in entries:
        if not isinstance(item, str):
            raise InputError(f"data yaml '{key}': expected a path, got {item!r}")
        source = Path(item) if Path(item).is_absolute() else (root / item).resolve()
        images.extend(_images_in(source, key))
    if not images:
        raise InputError(f"data yaml '{key}': no images found in {', '.join(map(str, entries))}")
    if not any(label_path(image).is_file() for image in images):
        raise InputError(
            f"data yaml '{key}': none of its {len(images)} images has a label file "
            f"(expected e.g. {label_path(images[0])})"
        )
    return tuple(images)


def load_dataset(yaml_path: str | Path, *, root: Path | None = None) -> DatasetSpec:
    """Reads and checks a YOLOv5 data yaml.

    Args:
        yaml_path: Path of the data yaml.
        root: The dataset's folder, instead of the yaml's ``path`` (a generated demo dataset is
            where its yaml is, wherever its ``path`` says it was made).

    Returns:
        The checked dataset.

    Raises:
        InputError: If the yaml is missing or malformed, or a split has no images or no labels.
    """
    path = Path(yaml_path).expanduser()
    if not path.is_file():
        raise InputError(f"data yaml not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise InputError(f"data yaml {path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise InputError(f"data yaml {path} must be a mapping with train, val and names")
    names = data.get("names")
    if isinstance(names, list):
        names = dict(enumerate(names))
    if not isinstance(names, dict) or not names or not all(isinstance(k, int) for k in names):
        raise InputError(f"data yaml {path}: 'names' must be a non-empty list or {{int: name}} map")
    if root is None:
        root = Path(str(data.get("path") or "")).expanduser()
        if not root.is_absolute():
            root = (path.parent / root).resolve()
    return DatasetSpec(
        yaml_path=path.resolve(),
        names={int(k): str(v) for k, v in names.items()},
        train_images=_split(data, root, "train", path),
        val_images=_split(data, root, "val", path),
    )


def write_trial_data_yaml(
    dataset: DatasetSpec,
    folder: Path,
    *,
    train_images: int | None = None,
    train_fraction: float | None = None,
    seed: int = 0,
) -> tuple[Path, int]:
    """Writes the yaml a trial trains on, with image lists in the trial's own folder.

    Args:
        dataset: The checked dataset.
        folder: The trial's folder.
        train_images: Use only this many training images (a seeded sample).
        train_fraction: Use only this fraction of the training images.
        seed: Seed of the sample.

    Returns:
        The yaml's path and the number of training images it uses.
    """
    chosen = list(dataset.train_images)
    count = len(chosen)
    if train_fraction is not None:
        count = max(1, round(len(chosen) * train_fraction))
    if train_images is not None:
        count = min(count, train_images)
    if count < len(chosen):
        chosen = sorted(random.Random(seed).sample(chosen, count))
    train_list, val_list = (folder / name for name in TRIAL_LISTS)
    train_list.write_text("".join(f"{p}\n" for p in chosen))
    val_list.write_text("".join(f"{p}\n" for p in dataset.val_images))
    trial_yaml = folder / "data.yaml"
    trial_yaml.write_text(
        yaml.safe_dump(
            {"path": str(folder), "train": str(train_list), "val": str(val_list), "names": dataset.names},
            sort_keys=False,
        )
    )
    return trial_yaml, len(chosen)


def snapshot_cache_files(images: Iterable[Path]) -> set[Path]:
    """The ``.npy`` files that ``cache=disk`` would write beside these images and that exist now."""
    return {p.with_suffix(".npy") for p in images if p.with_suffix(".npy").exists()}
