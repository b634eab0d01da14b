from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from search.child.compat import child_process_environment
from search.data._dataset import label_path, load_dataset
from search.data._demo import make_demo_dataset
from search.data._labels import highest_class, label_class_check, label_notes, read_label
from search.errors import InputError
from search.frameworks import get_framework

# Label files as users write them, and some that yolov5 rejects (its image is then dropped as
# corrupt, whatever the classes say).
LABELS = {
    "boxes": "0 0.5 0.5 0.2 0.2\n2 0.3 0.3 0.1 0.1\n",
    "float class": "2.0 0.5 0.5 0.2 0.2\n",
    "beyond": "1 0.5 0.5 0.2 0.2\n99 0.5 0.5 0.2 0.2\n",
    "polygon": "7 0.1 0.1 0.9 0.1 0.9 0.9 0.1 0.9\n",
    "polygon and box": "1 0.1 0.1 0.9 0.1 0.9 0.9 0.1 0.9\n5 0.5 0.5 0.2 0.2\n",
    "blank lines": "\n4 0.5 0.5 0.2 0.2\n\n",
    "empty": "",
    "four columns": "9 0.5 0.5 0.2\n",
    "six columns": "9 0.5 0.5 0.2 0.2 0.1\n",
    "words": "nine 0.5 0.5 0.2 0.2\n",
    "negative": "9 0.5 -0.5 0.2 0.2\n",
    "outside": "9 0.5 1.5 0.2 0.2\n",
    "not a number": "9 nan 0.5 0.2 0.2\n",
    "infinite class": "inf 0.5 0.5 0.2 0.2\n",
    "huge class": "1e400 0.5 0.5 0.2 0.2\n",
    "float32 class": "2.99999999 0.5 0.5 0.2 0.2\n",
    "negative class": "-1 0.5 0.5 0.2 0.2\n",
    "a little negative": "1 0.5 0.5 0.2 -0.005\n",
    "a little outside": "1 0.5 1.005 0.2 0.2\n",
    "infinite coordinate": "1 0.5 inf 0.2 0.2\n",
    "a line of spaces": "1 0.5 0.5 0.2 0.2\n   \n2 0.5 0.5 0.2 0.2\n",
}

# Files ultralytics' own verification rejects for another reason than yolov5 (it only gets a note).
ULTRALYTICS_REJECTS = {"polygon and box"}  # "labels mix segment and detection rows"
# Files both frameworks reject that are not called corrupt here: a class beyond names is its own
# note (yolov5 fails the training), and a polygon file is read more strictly here than by yolov5.
NOT_CLAIMED = {"beyond", "polygon", "polygon and box"}

# Run where a trial runs: in a child, with its environment (nothing written into the home), so that
# this test process never imports torch or a YOLO package.
VERIFY = """
import json, math, sys
from yolov5.utils.dataloaders import verify_image_label as yolov5_verify
from ultralytics.data.utils import verify_image_label as ultralytics_verify

found = {}
for image, label in json.loads(sys.argv[1]):
    _, boxes, *_, corrupt, _ = yolov5_verify((image, label, ""))
    top = None if corrupt or boxes is None or not len(boxes) else float(boxes[:, 0].max())
    # An infinite class passes yolov5's verification and crashes its training (int(inf)).
    highest = None if top is None else int(top) if math.isfinite(top) else "crash"
    *_, ultralytics_corrupt, message = ultralytics_verify((image, label, "", False, 3, 0, 0, False))
    skipped = "exceeds dataset class count" in message
    found[label] = [highest, skipped, bool(corrupt), bool(ultralytics_corrupt)]
print(json.dumps(found))
"""


def test_a_label_files_highest_class_is_the_one_yolov5_and_ultralytics_read(tmp_path: Path) -> None:
    data = make_demo_dataset(tmp_path / "d", images=len(LABELS), val_images=1, size=32)
    pairs = {}
    for image, (name, text) in zip(load_dataset(data).train_images, LABELS.items(), strict=True):
        label_path(image).write_text(text)
        pairs[name] = (str(image), str(label_path(image)))
    done = subprocess.run(
        [sys.executable, "-c", VERIFY, json.dumps(list(pairs.values()))],
        capture_output=True, text=True, timeout=300, check=False,
        env=child_process_environment(tmp_path / "settings"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    for name, (_, label) in pairs.items():
        highest, skipped_by_ultralytics, yolov5_corrupt, ultralytics_corrupt = theirs[label]
        # A row called corrupt here is corrupt to both (where they differ, nothing is claimed).
        rejected = read_label(Path(label))[1]
        assert rejected is None or (yolov5_corrupt and ultralytics_corrupt), name
        assert (rejected is not None) == (
            yolov5_corrupt and ultralytics_corrupt and name not in NOT_CLAIMED
        ), name
        # yolov5's reading; a class its training crashes on is left to it (never refused wrongly).
        assert highest_class(Path(label)) == (None if highest == "crash" else highest), name
        ours = highest_class(Path(label))
        if name not in ULTRALYTICS_REJECTS:
            assert (ours is not None and ours >= 3) == skipped_by_ultralytics, name  # names has 3 classes
    assert highest_class(tmp_path / "missing.txt") is None


def test_labels_beyond_the_names_are_found_in_both_splits(tmp_path: Path) -> None:
    data = make_demo_dataset(tmp_path / "d", images=4, val_images=2, size=32)
    dataset = load_dataset(data)
    assert not label_class_check(dataset).beyond and label_class_check(dataset).text(data) is None
    train, val = label_path(dataset.train_images[1]), label_path(dataset.val_images[0])
    train.write_text(LABELS["beyond"])
    val.write_text(LABELS["polygon"])
    label_path(dataset.train_images[2]).write_text(LABELS["outside"])  # dropped by yolov5: not counted
    check = label_class_check(dataset)
    assert check.class_count == len(dataset.names) == 3
    assert check.beyond == ((train, 99), (val, 7))
    text = check.text(dataset.yaml_path)
    assert text == (
        f"data yaml {dataset.yaml_path}: 2 label files have a class id not below the 3 classes of its names "
        f"(e.g. {train}: class 99)"
    )


def test_the_label_of_an_unreadable_image_or_a_label_that_is_no_file_is_not_read(tmp_path: Path) -> None:
    data = make_demo_dataset(tmp_path / "d", images=3, val_images=2, size=32)
    dataset = load_dataset(data)
    broken = dataset.train_images[0]
    label_path(broken).write_text(LABELS["beyond"])
    assert label_class_check(dataset).beyond
    # yolov5 drops an image it cannot read, with its label: it is no reason to refuse the dataset.
    assert not label_class_check(dataset, skip=[broken]).beyond
    assert label_notes(dataset, get_framework("yolov5"), unreadable=[broken]) == []
    # A pipe named like a label (reading it would wait forever) and a folder: no label file.
    label_path(broken).unlink()
    os.mkfifo(label_path(broken))
    assert highest_class(label_path(broken)) is None
    label_path(broken).unlink()
    label_path(broken).mkdir()
    assert highest_class(label_path(broken)) is None


def test_yolov5_refuses_such_labels_and_ultralytics_is_told_it_skips_them(tmp_path: Path) -> None:
    data = make_demo_dataset(tmp_path / "d", images=3, val_images=2, size=32)
    dataset = load_dataset(data)
    yolov5, ultralytics = get_framework("yolov5"), get_framework("ultralytics")
    assert label_notes(dataset, yolov5) == label_notes(dataset, ultralytics) == []
    label_path(dataset.train_images[0]).write_text("3 0.5 0.5 0.2 0.2\n")  # names has 0-2
    with pytest.raises(InputError, match=r"1 label file has a class id not below .*: yolov5 fails a"):
        label_notes(dataset, yolov5)
    (note,) = label_notes(dataset, ultralytics)
    label = label_path(dataset.train_images[0])
    assert note.endswith(f"(e.g. {label}: class 3): ultralytics skips their images as corrupt")


def test_a_row_both_frameworks_reject_is_a_note_naming_the_file_and_why(tmp_path: Path) -> None:
    # yolov5 drops such an image without a word to the user: one image fewer, trained on silently.
    data = make_demo_dataset(tmp_path / "d", images=3, val_images=2, size=32)
    dataset = load_dataset(data)
    label = label_path(dataset.train_images[1])
    label.write_text(LABELS["negative class"])
    (note,) = label_notes(dataset, get_framework("yolov5"))
    assert note == (
        f"data yaml {data}: 1 label file has a row yolov5 rejects (e.g. {label}: a negative value): "
        "it leaves that image out of training as corrupt"
    )
    label.write_text(LABELS["four columns"])
    (note,) = label_notes(dataset, get_framework("ultralytics"))
    assert f"{label}: a row of 4 values, not 5" in note


def test_every_training_label_rejected_is_an_error_not_a_note(tmp_path: Path) -> None:
    # The framework would refuse the training ("No labels found") after its start-up: say it first.
    data = make_demo_dataset(tmp_path / "d", images=3, val_images=2, size=32)
    dataset = load_dataset(data)
    for image in dataset.train_images:
        label_path(image).write_text("garbage line here\n")
    with pytest.raises(
        InputError, match=r"every training image's label file has a row yolov5 rejects \(e.g. "
    ):
        label_notes(dataset, get_framework("yolov5"))
    label_path(dataset.train_images[0]).write_text("0 0.5 0.5 0.2 0.2\n")  # one left: a note again
    (note,) = label_notes(dataset, get_framework("yolov5"))
    assert note.startswith(f"data yaml {data}: 2 label files have a row yolov5 rejects")
