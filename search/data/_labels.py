"""Label class ids checked against the data yaml's ``names`` before any training.

A label whose class id is not below the number of ``names`` is bad input that only training would
find: yolov5 7.0.14 fails a training that reads it (``train.py``: ``Label class 99 exceeds nc=3``; a
validation label of that kind fails at the end of the first epoch instead), so the trials of a
study would fail alike, and so would the run export prints; ultralytics drops the image as corrupt,
with a warning, and trains on. The study finds it first (:func:`label_class_check`) by reading each
label file about as yolov5 verifies it (``verify_image_label``), erring on the side of not counting
a file: one it rejects for another reason (a row that is not 5 finite numbers, or a polygon; a
negative value; a coordinate above 1) drops its image whatever its classes, so it is not counted
here either, nor is the label of an image that cannot be read. Where this reading is stricter than
yolov5's (polygon points a little outside 0-1), a bad class can go unseen here and fail the
trainings as before. One case errs the other way: an image whose header reads but whose pixels do
not is dropped by yolov5 with its label, while its label is read here (both at once are rare).
ultralytics' verification differs at the edges too (it rejects a file that mixes polygon and box
rows, and allows coordinates 1% out of bounds), which can only change its note. Read in the
parent, without numpy, one file after another: parsing holds the GIL, and threads made it 2.5-3
times slower on this 2-core machine (50,000 files: 3.3-3.9 s alone, 9.1-9.7 s on 8 threads).
"""

from __future__ import annotations

import dataclasses
import math
import os
import struct
from collections.abc import Collection
from pathlib import Path

from search.data._dataset import DatasetSpec, label_file
from search.data._scans import cached_scan
from search.errors import InputError
from search.frameworks._base import Framework

__all__ = ["LabelClassCheck", "highest_class", "label_class_check", "label_notes", "read_label"]


def label_notes(
    dataset: DatasetSpec, framework: Framework, *, unreadable: Collection[Path] = ()
) -> list[str]:
    """Notes on label files whose images the framework leaves out of training: a class not in
    ``names`` (for a framework that skips such images), a row both frameworks reject as corrupt.

    Args:
        dataset: The checked dataset.
        framework: The framework the study trains with.
        unreadable: Images that cannot be read (both frameworks skip them with their labels).

    Raises:
        InputError: If any label has a class not in ``names`` and ``framework`` fails a training on it,
            or every training image's label file is rejected.
    """
    check = label_class_check(dataset, skip=unreadable)
    notes = []
    unknown = check.text(dataset.yaml_path)
    if unknown is not None:
        if not framework.skips_unknown_classes:
            raise InputError(f"{unknown}: {framework.name} fails a training that reads it")
        notes.append(f"{unknown}: {framework.name} skips their images as corrupt")
    if check.rejected:
        path, why = check.rejected[0]
        rejected = {label for label, _ in check.rejected}
        skipped = set(unreadable)
        train = [Path(label_file(str(image))) for image in dataset.train_images if image not in skipped]
        if train and all(label in rejected for label in train):
            raise InputError(
                f"data yaml {dataset.yaml_path}: every training image's label file has a row "
                f"{framework.name} rejects (e.g. {path}: {why}): no labels would be left to train on"
            )
        count = len(check.rejected)
        files = "1 label file has" if count == 1 else f"{count} label files have"
        notes.append(
            f"data yaml {dataset.yaml_path}: {files} a row {framework.name} rejects (e.g. {path}: {why}): "
            f"it leaves {'that image' if count == 1 else 'their images'} out of training as corrupt"
        )
    return notes


@dataclasses.dataclass(frozen=True)
class LabelClassCheck:
    """The label files whose class ids are not all below the data yaml's class count, and those the
    frameworks reject as corrupt.

    Attributes:
        class_count: How many classes the data yaml's ``names`` has.
        beyond: Each such label file, with its highest class id, in the order of the images.
        rejected: Each label file both frameworks reject, with why (:func:`read_label`).
    """

    class_count: int
    beyond: tuple[tuple[Path, int], ...]
    rejected: tuple[tuple[Path, str], ...] = ()

    def text(self, yaml_path: Path) -> str | None:
        """What is wrong with the classes, in one line (None: nothing): ``data yaml D: 2 label files
        have a class id not below the 3 classes of its names (e.g. .../a.txt: class 99)``."""
        if not self.beyond:
            return None
        path, highest = self.beyond[0]
        count = len(self.beyond)
        files = "1 label file has" if count == 1 else f"{count} label files have"
        return (
            f"data yaml {yaml_path}: {files} a class id not below the {self.class_count} classes of its "
            f"names (e.g. {path}: class {highest})"
        )


def label_class_check(dataset: DatasetSpec, *, skip: Collection[Path] = ()) -> LabelClassCheck:
    """Reads the label file of every training and validation image (but those in ``skip``), for
    class ids beyond ``names`` and rows the frameworks reject; kept between runs until a label file
    changes (:mod:`search.data._scans`)."""
    class_count = len(dataset.names)
    skipped = set(skip)
    labels = [label_file(str(image)) for image in dataset.all_images if image not in skipped]

    def scan() -> LabelClassCheck:
        found = [(Path(label), *read_label(label)) for label in labels]
        return LabelClassCheck(
            class_count=class_count,
            beyond=tuple((path, h) for path, h, _ in found if h is not None and h >= class_count),
            rejected=tuple((path, why) for path, _, why in found if why is not None),
        )

    return cached_scan(
        "label-classes", dataset=dataset.yaml_path, files=labels,
        settings={"classes": class_count, "rejected": 2}, scan=scan,
        encode=lambda check: {
            "beyond": [[str(path), highest] for path, highest in check.beyond],
            "rejected": [[str(path), why] for path, why in check.rejected],
        },
        decode=lambda data: LabelClassCheck(
            class_count=class_count,
            beyond=tuple((Path(path), int(highest)) for path, highest in data["beyond"]),
            rejected=tuple((Path(path), str(why)) for path, why in data["rejected"]),
        ),
    )  # fmt: skip


def highest_class(label: str | Path) -> int | None:
    """A label file's highest class id, as yolov5 reads it (``int`` of the first column's maximum,
    in float32); None when there is no such file, it holds no row, or yolov5 would reject it."""
    return read_label(label)[0]


def read_label(label: str | Path) -> tuple[int | None, str | None]:
    """A label file's highest class id (:func:`highest_class`), and why both frameworks reject it as
    corrupt where they both do (None otherwise): a value that is not a number, a box row of other
    than 5 values, a value below -0.01 or a negative width or height, a coordinate above 1.01
    (ultralytics' tolerances; yolov5 has none, so it rejects more, which is not claimed here)."""
    try:
        if not os.path.isfile(label):  # a folder or a pipe of that name: yolov5 reads no labels there
            return None, None
        with open(label) as file:  # the locale's encoding, as yolov5 opens it
            text = file.read()
    except (OSError, UnicodeDecodeError):
        return None, None
    rows = [line.split() for line in text.strip().splitlines() if line]
    if not rows or not all(rows):
        # A line of spaces: yolov5 rejects the file, ultralytics skips the line (nothing claimed).
        return None, None
    try:
        values = [[float(word) for word in row] for row in rows]
    except ValueError:
        return None, "a value that is not a number"
    if any(len(row) > 6 for row in values):
        # A polygon file: class then x y pairs per row, which yolov5 turns into boxes.
        if any(len(row) < 3 or len(row) % 2 == 0 for row in values):
            return None, None
    elif any(len(row) != 5 for row in values):
        columns = next(len(row) for row in values if len(row) != 5)
        return None, f"a row of {columns} values, not 5"
    boxes = all(len(row) == 5 for row in values)
    if not all(math.isfinite(value) for row in values for value in row):
        # An infinite class passes yolov5's verification (its training crashes on it instead).
        coordinate = boxes and not all(math.isfinite(value) for row in values for value in row[1:])
        return None, "a coordinate that is not a number" if coordinate else None
    if not all(value >= 0 for row in values for value in row):
        low = min(value for row in values for value in row)
        sizes = min(value for row in values for value in row[3:5]) if boxes else 0.0
        return None, "a negative value" if boxes and (low < -0.01 or sizes < 0) else None
    if any(value > 1 for row in values for value in row[1:]):
        high = max(value for row in values for value in row[1:])
        return None, "a coordinate above 1" if boxes and high > 1.01 else None
    top = max(row[0] for row in values)
    # yolov5 holds labels as float32, where 2.99999999 is 3.0; beyond 2**24 no class count is near.
    return (int(struct.unpack("f", struct.pack("f", top))[0]) if top < 2**24 else int(top)), None
