"""The frameworks' label caches kept between trials (search.data._label_caches)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from search.data._demo import make_demo_dataset
from search.data._label_caches import keep_label_caches, label_cache_key, restore_label_caches
from search.trial._config import TrialConfig
from search.trial._supervisor import run_trial

from .conftest import child_hook


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("MEMFRONT_CACHE_DIR", str(folder))
    return folder / "label-caches"


def _trial_folder(root: Path, images: list[Path]) -> Path:
    """A trial's folder with its image lists: ``images`` to train on, the first to validate on."""
    root.mkdir(parents=True)
    (root / "train.txt").write_text("".join(f"{image}\n" for image in images))
    (root / "val.txt").write_text(f"{images[0]}\n")
    return root


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    """Three images with their label files (the key reads their state, not their content)."""
    found = []
    for index in range(3):
        image = tmp_path / "data" / "images" / f"{index}.jpg"
        label = tmp_path / "data" / "labels" / f"{index}.txt"
        for path, text in ((image, "jpeg"), (label, "0 0.5 0.5 0.1 0.1\n")):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        found.append(image)
    return found


LISTS = ("train.txt", "val.txt")


def test_kept_caches_go_to_the_next_trial_of_the_same_files(
    cache: Path, tmp_path: Path, images: list[Path]
) -> None:
    first = _trial_folder(tmp_path / "a", images)
    key = label_cache_key(first, LISTS, "yolov5 7.0.14")
    (first / "train.cache").write_bytes(b"train labels")
    (first / "sub").mkdir()
    (first / "sub" / "x.cache").write_bytes(b"nested")
    assert keep_label_caches(first, key, ("train.cache", "val.cache", "sub/*.cache")) == 2
    same = _trial_folder(tmp_path / "b", images)
    assert label_cache_key(same, LISTS, "yolov5 7.0.14") == key
    restored = restore_label_caches(same, key)
    assert sorted(restored) == ["sub/x.cache", "train.cache"]
    assert (same / "train.cache").read_bytes() == b"train labels" and (same / "sub" / "x.cache").is_file()
    # The framework read them and wrote nothing: nothing to keep again.
    assert keep_label_caches(same, key, ("train.cache", "sub/*.cache"), restored) == 0
    # Other images, another framework version: another key, nothing restored.
    other = _trial_folder(tmp_path / "c", images[:2])
    assert label_cache_key(other, LISTS, "yolov5 7.0.14") != key
    assert label_cache_key(same, LISTS, "yolov5 7.0.15") != key
    assert restore_label_caches(other, label_cache_key(other, LISTS, "yolov5 7.0.14")) == {}


def test_a_label_edited_to_the_same_size_is_another_key(tmp_path: Path, images: list[Path]) -> None:
    # yolov5's own check sums the files' sizes: class 0 edited to class 1 would pass it.
    folder = _trial_folder(tmp_path / "a", images)
    key = label_cache_key(folder, LISTS, "yolov5 7.0.14")
    label = images[1].parent.parent / "labels" / "1.txt"
    before = label.stat()
    label.write_text("1 0.5 0.5 0.1 0.1\n")
    os.utime(label, ns=(before.st_atime_ns, before.st_mtime_ns))  # as cp -p or rsync -a leave it
    assert label.stat().st_size == before.st_size
    assert label_cache_key(folder, LISTS, "yolov5 7.0.14") != key


def test_a_cache_the_framework_rewrote_replaces_the_kept_one(
    cache: Path, tmp_path: Path, images: list[Path]
) -> None:
    first = _trial_folder(tmp_path / "a", images)
    key = label_cache_key(first, LISTS, "v")
    (first / "train.cache").write_bytes(b"cut sh")  # a trial that died while writing it
    assert keep_label_caches(first, key, ("train.cache", "val.cache")) == 1
    second = _trial_folder(tmp_path / "b", images)
    restored = restore_label_caches(second, key)
    (second / "train.cache").write_bytes(b"whole again")  # found damaged: scanned and rewritten
    (second / "val.cache").write_bytes(b"val")  # and the one the first never wrote
    assert keep_label_caches(second, key, ("train.cache", "val.cache"), restored) == 2
    third = _trial_folder(tmp_path / "c", images)
    restore_label_caches(third, key)
    assert (third / "train.cache").read_bytes() == b"whole again" and (
        third / "val.cache"
    ).read_bytes() == b"val"


def test_the_least_recently_used_caches_go_first_beyond_the_cap(
    cache: Path, tmp_path: Path, images: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("search.data._label_caches.MAX_KEPT_BYTES", 2500)
    for index in range(3):
        folder = _trial_folder(tmp_path / f"t{index}", images)
        (folder / "train.cache").write_bytes(b"x" * 1000)
        assert keep_label_caches(folder, f"key{index}", ("train.cache",)) == 1
        os.utime(cache / f"key{index}", (index, index))  # kept in this order
        if index == 1:
            restore_label_caches(tmp_path / "t0", "key0")  # used again: now the most recent
    assert sorted(p.name for p in cache.iterdir()) == ["key0", "key2"]
    # A copy left half done by a process that died: removed once old.
    (cache / "key2" / ".train.cache.abandoned").write_bytes(b"")
    (cache / "key2" / ".train.cache.recent").write_bytes(b"")
    os.utime(cache / "key2" / ".train.cache.abandoned", (0, 0))
    folder = _trial_folder(tmp_path / "t3", images)
    (folder / "train.cache").write_bytes(b"x")
    assert keep_label_caches(folder, "key5", ("train.cache",)) == 1
    assert not (cache / "key2" / ".train.cache.abandoned").exists()
    assert (cache / "key2" / ".train.cache.recent").exists()


def test_an_unusable_cache_folder_is_no_error(
    tmp_path: Path, images: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    monkeypatch.setenv("MEMFRONT_CACHE_DIR", str(blocked))
    folder = _trial_folder(tmp_path / "t", images)
    (folder / "train.cache").write_bytes(b"x")
    assert keep_label_caches(folder, "key", ("train.cache",)) == 0
    assert restore_label_caches(folder, "key") == {}


def _watch_cache_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every file the trial's child opens with ``.cache`` in its name, as ``MODE NAME`` lines.

    An audit hook: it only watches. The frameworks write a label cache after scanning the labels,
    and only read it when it matches the files.
    """
    opened = tmp_path / "opened.txt"
    child_hook(
        tmp_path,
        monkeypatch,
        "import sys\n"
        "def watch(event, args):\n"
        "    if event == 'open' and isinstance(args[0], str) and '.cache' in args[0]:\n"
        f"        with open({str(opened)!r}, 'a') as log:\n"
        "            log.write(f'{args[1]} {args[0].rsplit(\"/\", 1)[-1]}\\n')\n"
        "sys.addaudithook(watch)\n",
    )
    return opened


def _opened(log: Path) -> list[str]:
    lines = [line for line in log.read_text().split("\n") if line]
    log.unlink()
    return lines


@pytest.mark.slow
def test_a_second_trial_of_the_same_images_reads_the_first_ones_label_cache(
    cache: Path, tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = _watch_cache_files(tmp_path, monkeypatch)
    config = TrialConfig(data=str(tiny_data), batch=8, imgsz=64, epochs=1)
    assert run_trial(config=config, workdir=tmp_path).status == "ok"
    first = _opened(opened)
    assert any(line.startswith("w") and "train.cache" in line for line in first), first
    assert sorted(p.name for p in next(cache.iterdir()).iterdir()) == ["train.cache", "val.cache"]
    assert run_trial(config=config, workdir=tmp_path).status == "ok"
    second = _opened(opened)
    assert any(line.startswith("r") and "train.cache" in line for line in second), second
    assert not any(line.startswith("w") for line in second), second  # nothing scanned again


@pytest.mark.slow
def test_ultralytics_keeps_one_cache_per_split_when_they_share_a_label_folder(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Image lists over one images/ folder: ultralytics names both splits' caches after labels/,
    # and a second trial reads both instead of scanning again.
    data = make_demo_dataset(tmp_path / "shared", images=16, val_images=1, size=96)
    images = sorted(str(image) for image in (data.parent / "images" / "train").iterdir())
    (data.parent / "train.txt").write_text("\n".join(images[:12]) + "\n")
    (data.parent / "val.txt").write_text("\n".join(images[12:]) + "\n")
    data.write_text(data.read_text().replace("images/train", "train.txt").replace("images/val", "val.txt"))
    opened = _watch_cache_files(tmp_path, monkeypatch)
    config = TrialConfig(data=str(data), model="yolov8n.yaml", batch=8, imgsz=64, epochs=1)
    assert run_trial(config=config, workdir=tmp_path).status == "ok"
    first = _opened(opened)
    assert sum(line.startswith("w") for line in first) == 2, first
    (kept,) = cache.iterdir()
    assert len(list((kept / "label-caches").iterdir())) == 2
    assert run_trial(config=config, workdir=tmp_path).status == "ok"
    second = _opened(opened)
    assert sum(line.startswith("r") and line.endswith("train.cache") for line in second) == 2, second
    assert not any(line.startswith("w") for line in second), second
