"""Dataset scans kept between commands (search.data._scans): reused while no file they read
changed, read again when one did, and no error when the cache is unusable."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from search.data._dataset import label_path, load_dataset
from search.data._demo import make_demo_dataset
from search.data._labels import label_class_check
from search.model._predict import DatasetStats


@pytest.fixture
def dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MEMFRONT_CACHE_DIR", str(tmp_path / "cache"))
    return make_demo_dataset(tmp_path / "data", images=6, val_images=2, size=48)


def _rewrite_keeping_size_and_time(path: Path, content: bytes) -> None:
    """New content of the same length, the old modification time put back (as ``cp -p``, ``rsync
    -a`` and ``tar`` do): only its status-change time tells it from the old file."""
    before = path.stat()
    assert len(content) == before.st_size
    path.write_bytes(content)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def _stored(tmp_path: Path, kind: str) -> tuple[Path, dict[str, Any]]:
    (entry,) = (tmp_path / "cache" / "scans").glob(f"{kind}-*.json")
    return entry, json.loads(entry.read_text())


def test_a_stored_scan_is_what_the_next_command_reads_while_no_file_changed(
    dataset: Path, tmp_path: Path
) -> None:
    first = DatasetStats.read(load_dataset(dataset))
    assert first.unreadable == () and len(first.train_sizes) == 6
    assert label_class_check(load_dataset(dataset)).beyond == ()
    # Stored results changed by hand come back as they are: the files were not read again.
    entry, stored = _stored(tmp_path, "image-sizes")
    stored["value"]["train"] = [[7, 9, 6]]
    entry.write_text(json.dumps(stored))
    assert DatasetStats.read(load_dataset(dataset)).train_sizes == ((7, 9),) * 6
    label = label_path(load_dataset(dataset).train_images[0])
    entry, stored = _stored(tmp_path, "label-classes")
    stored["value"]["beyond"] = [[str(label), 7]]
    entry.write_text(json.dumps(stored))
    assert label_class_check(load_dataset(dataset)).beyond == ((label, 7),)


def test_a_command_that_only_reads_uses_the_cache_and_writes_none(dataset: Path, tmp_path: Path) -> None:
    fresh = DatasetStats.read(load_dataset(dataset), cache="read")
    assert not (tmp_path / "cache").exists()  # report, plot, export, status write nothing
    assert DatasetStats.read(load_dataset(dataset)) == fresh  # what run does: stored
    entry, stored = _stored(tmp_path, "image-sizes")
    stored["value"]["val"] = [[5, 5, 2]]
    entry.write_text(json.dumps(stored))
    assert DatasetStats.read(load_dataset(dataset), cache="read").val_sizes == ((5, 5), (5, 5))


def test_image_sizes_are_read_again_when_an_image_changed(dataset: Path) -> None:
    image = load_dataset(dataset).train_images[1]
    first = DatasetStats.read(load_dataset(dataset))
    # Garbage of the same length with the old modification time: read again, and unreadable.
    _rewrite_keeping_size_and_time(image, b"x" * image.stat().st_size)
    again = DatasetStats.read(load_dataset(dataset))
    assert again.unreadable_images == (image,) and len(again.train_sizes) == 5 and again != first
    # That result, unreadable image and all, comes back from the cache the same.
    assert DatasetStats.read(load_dataset(dataset)) == again
    image.unlink()
    gone = DatasetStats.read(load_dataset(dataset))
    assert gone.unreadable == () and len(gone.train_sizes) == 5


def test_a_cached_scan_equals_a_fresh_one_in_order(dataset: Path) -> None:
    from PIL import Image

    images = load_dataset(dataset).train_images
    for index, image in enumerate(images[:3]):
        Image.new("RGB", (20 + index, 30), "red").save(image, "JPEG")  # sizes in no sorted order
    fresh = DatasetStats.read(load_dataset(dataset))
    assert DatasetStats.read(load_dataset(dataset)) == fresh  # from the cache
    assert fresh.train_sizes[:3] == ((20, 30), (21, 30), (22, 30))
    assert DatasetStats.read(load_dataset(dataset), cache="off") == fresh


def test_label_classes_are_read_again_when_a_label_or_the_names_changed(dataset: Path) -> None:
    label = label_path(load_dataset(dataset).train_images[0])
    text = label.read_text()
    assert label_class_check(load_dataset(dataset)).beyond == ()
    _rewrite_keeping_size_and_time(label, ("9" + text[1:]).encode())
    assert label_class_check(load_dataset(dataset)).beyond == ((label, 9),)
    # Ten names: class 9 is one of them (the class count is part of what the scan read).
    names = {i: f"class{i}" for i in range(10)}
    dataset.write_text(yaml.safe_dump({**yaml.safe_load(dataset.read_text()), "names": names}))
    assert label_class_check(load_dataset(dataset)).beyond == ()


def test_an_unusable_cache_is_no_error(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh = DatasetStats.read(load_dataset(dataset))
    entries = list((tmp_path / "cache" / "scans").iterdir())
    assert entries
    for damaged in ("{not json", "[1, 2]", '{"fingerprint": 3, "value": null}'):
        for entry in entries:
            entry.write_text(damaged)
        assert DatasetStats.read(load_dataset(dataset)) == fresh
        assert label_class_check(load_dataset(dataset)).beyond == ()
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    monkeypatch.setenv("MEMFRONT_CACHE_DIR", str(blocked))  # a folder cannot be made there
    assert DatasetStats.read(load_dataset(dataset)) == fresh
    assert label_class_check(load_dataset(dataset)).beyond == ()
