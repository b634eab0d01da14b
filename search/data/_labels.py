"""Label class ids checked against the data yaml's ``names`` before any training.

A label whose class id is not below the number of ``names`` is bad input that only training would
find: yolov5 7.0.14 fails every training on it (``train.py``: ``Label class 99 exceeds nc=3``; a
validation label of that kind fails at the end of the first epoch instead), so each trial of a
study would fail alike; ultralytics drops the image as corrupt, with a warning, and trains on. The
study finds it first (:func:`label_class_check`) by reading each label file as yolov5 verifies it
(``verify_image_label``): a file it rejects for another reason (a row that is not 5 numbers, or a
polygon; a negative value; a coordinate above 1) drops its image whatever its classes, so it is not
counted here either. ultralytics' verification differs at the edges (it rejects a file that mixes
polygon and box rows, and allows coordinates 1% out of bounds), which can only change its note.
Read in the parent, without numpy.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from search.data._dataset import DatasetSpec, label_path
from search.errors import InputError
from search.frameworks._base import Framework

__all__ = ["LabelClassCheck", "label_class_check", "unknown_classes_note"]


def unknown_classes_note(dataset: DatasetSpec, framework: Framework) -> str | None:
    """A note on labels whose class is not in ``names``, for a framework that skips their images.

    Raises:
        InputError: If any label has such a class and ``framework`` fails a training on it.
    """
    problem = label_class_check(dataset).text(dataset.yaml_path)
    if problem is None:
        return None
    if not framework.skips_unknown_classes:
        raise InputError(f"{problem}: {framework.name} fails every training on it")
    return f"{problem}: {framework.name} skips their images as corrupt"


@dataclasses.dataclass(frozen=True)
class LabelClassCheck:
    """The label files whose class ids are not all below the data yaml's class count.

    Attributes:
        class_count: How many classes the data yaml's ``names`` has.
        beyond: Each such label file, with its highest class id, in the order of the images.
    """

    class_count: int
    beyond: tuple[tuple[Path, int], ...]

    def text(self, yaml_path: Path) -> str | None:
        """What is wrong, in one line (None: nothing): ``data yaml D: 2 label files have a class
        id not below the 3 classes of its names (e.g. .../a.txt: class 99)``."""
        if not self.beyond:
            return None
        path, highest = self.beyond[0]
        count = len(self.beyond)
        files = "1 label file has" if count == 1 else f"{count} label files have"
        return (
            f"data yaml {yaml_path}: {files} a class id not below the {self.class_count} classes of its "
            f"names (e.g. {path}: class {highest})"
        )


def label_class_check(dataset: DatasetSpec) -> LabelClassCheck:
    """Reads the label file of every training and validation image, for class ids beyond ``names``."""
    class_count = len(dataset.names)
    beyond = []
    for image in dataset.all_images:
        label = label_path(image)
        highest = highest_class(label)
        if highest is not None and highest >= class_count:
            beyond.append((label, highest))
    return LabelClassCheck(class_count=class_count, beyond=tuple(beyond))


def highest_class(label: Path) -> int | None:
    """A label file's highest class id, as yolov5 and ultralytics read it (``int`` of the first
    column's maximum); None when there is no file, it holds no row, or they would reject it."""
    try:
        text = label.read_text()
    except (OSError, UnicodeDecodeError):
        return None
    rows = [line.split() for line in text.strip().splitlines() if line]
    if not rows:
        return None
    try:
        values = [[float(word) for word in row] for row in rows]
    except ValueError:
        return None
    if any(len(row) > 6 for row in values):
        # A polygon file: class then x y pairs per row, which they turn into boxes.
        if any(len(row) < 3 or len(row) % 2 == 0 for row in values):
            return None
    elif any(len(row) != 5 for row in values):
        return None
    if any(value < 0 for row in values for value in row) or any(v > 1 for row in values for v in row[1:]):
        return None
    return int(max(row[0] for row in values))
