"""The frameworks' label caches kept between trials (search.data._label_caches)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from search.data._label_caches import keep_label_caches, label_cache_key, restore_label_caches
from search.trial._config import TrialConfig
from search.trial._supervisor import run_trial

from .conftest import child_hook


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("MEMFRONT_CACHE_DIR", str(folder))
    return folder / "label-caches"


def _trial_folder(root: Path, train: str, val: str = "v\n") -> Path:
    root.mkdir(parents=True)
    (root / "train.txt").write_text(train)
    (root / "val.txt").write_text(val)
    return root


def test_kept_caches_go_to_the_next_trial_of_the_same_lists_and_version(cache: Path, tmp_path: Path) -> None:
    first = _trial_folder(tmp_path / "a", "a.jpg\nb.jpg\n")
    key = label_cache_key(first, ("train.txt", "val.txt"), "yolov5 7.0.14")
    (first / "train.cache").write_bytes(b"train labels")
    (first / "sub").mkdir()
    (first / "sub" / "x.cache").write_bytes(b"nested")
    assert keep_label_caches(first, key, ("train.cache", "val.cache", "sub/*.cache"))
    assert not keep_label_caches(first, key, ("train.cache",))  # kept once
    same = _trial_folder(tmp_path / "b", "a.jpg\nb.jpg\n")
    assert label_cache_key(same, ("train.txt", "val.txt"), "yolov5 7.0.14") == key
    assert restore_label_caches(same, key) == 2
    assert (same / "train.cache").read_bytes() == b"train labels" and (same / "sub" / "x.cache").is_file()
    # Other images, or another version of the framework: another key, nothing restored.
    other = _trial_folder(tmp_path / "c", "a.jpg\n")
    assert label_cache_key(other, ("train.txt", "val.txt"), "yolov5 7.0.14") != key
    assert label_cache_key(same, ("train.txt", "val.txt"), "yolov5 7.0.15") != key
    assert restore_label_caches(other, label_cache_key(other, ("train.txt", "val.txt"), "x")) == 0
    assert not keep_label_caches(other, "k", ("train.cache",))  # nothing to keep


def test_the_least_recently_used_caches_go_first_beyond_the_cap(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("search.data._label_caches.MAX_KEPT_BYTES", 2500)
    for index in range(3):
        folder = _trial_folder(tmp_path / f"t{index}", f"{index}.jpg\n")
        (folder / "train.cache").write_bytes(b"x" * 1000)
        assert keep_label_caches(folder, f"key{index}", ("train.cache",))
        os.utime(cache / f"key{index}", (index, index))  # kept in this order
        if index == 1:
            restore_label_caches(tmp_path / "t0", "key0")  # used again: now the most recent
    assert sorted(p.name for p in cache.iterdir()) == ["key0", "key2"]
    # A copy left half done by a process that died: removed once old.
    (cache / ".key3.abandoned").mkdir()
    (cache / ".key4.recent").mkdir()
    os.utime(cache / ".key3.abandoned", (0, 0))
    folder = _trial_folder(tmp_path / "t3", "3.jpg\n")
    (folder / "train.cache").write_bytes(b"x")
    assert keep_label_caches(folder, "key5", ("train.cache",))
    assert not (cache / ".key3.abandoned").exists() and (cache / ".key4.recent").exists()


def test_an_unusable_cache_folder_is_no_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    monkeypatch.setenv("MEMFRONT_CACHE_DIR", str(blocked))
    folder = _trial_folder(tmp_path / "t", "a.jpg\n")
    (folder / "train.cache").write_bytes(b"x")
    assert not keep_label_caches(folder, "key", ("train.cache",))
    assert restore_label_caches(folder, "key") == 0


@pytest.mark.slow
def test_a_second_trial_of_the_same_images_reads_the_first_ones_label_cache(
    cache: Path, tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every file the child opens with a name ending in .cache or .cache.npy is written down (an
    # audit hook: it only watches). yolov5 writes train.cache after scanning, and only reads it when
    # it finds one that matches the files.
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
    config = TrialConfig(data=str(tiny_data), batch=8, imgsz=64, epochs=1)
    assert run_trial(config=config, workdir=tmp_path).status == "ok"
    first = opened.read_text().split("\n")
    assert any(line.startswith("w") and "train.cache" in line for line in first), first
    assert sorted(p.name for p in next(cache.iterdir()).iterdir()) == ["train.cache", "val.cache"]
    opened.unlink()
    assert run_trial(config=config, workdir=tmp_path).status == "ok"
    second = [line for line in opened.read_text().split("\n") if line]
    assert any(line.startswith("r") and "train.cache" in line for line in second), second
    assert not any(line.startswith("w") for line in second), second  # nothing scanned again
