"""What killed workers leave behind is removed; disk caches shared by concurrent trials are removed once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from search.data._dataset import load_dataset
from search.data._demo import make_demo_dataset
from search.trial import _leftovers
from search.trial._leftovers import CHILD_TEMP_PREFIX, TRIAL_PREFIX, DiskCacheClaim, remove_abandoned


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def _write_npy(images: list[Path]) -> list[Path]:
    """What yolov5's cache=disk writes: one .npy beside each image."""
    written = []
    for image in images:
        np.save(image.with_suffix(".npy"), np.zeros((4, 4, 3), dtype=np.uint8))
        written.append(image.with_suffix(".npy"))
    return written


def test_folders_of_dead_workers_are_removed_and_others_kept(tmp_path: Path) -> None:
    temp = Path(tempfile.gettempdir())
    dead, alive = _dead_pid(), subprocess.Popen(["sleep", "30"])
    try:
        # Named as tempfile.mkdtemp names them: the prefix with the pid, then 8 random characters.
        abandoned = [
            tmp_path / f"{TRIAL_PREFIX}{dead}-abcd_123",
            temp / f"{CHILD_TEMP_PREFIX}{dead}-efgh_456",
        ]
        kept = [
            tmp_path / f"{TRIAL_PREFIX}{alive.pid}-ijkl_789",
            tmp_path / f"{TRIAL_PREFIX}olderformat",
            tmp_path / f"{TRIAL_PREFIX}{dead}-renamed-by-the-user",  # not a name mkdtemp makes
        ]
        for folder in abandoned + kept:
            (folder / "run").mkdir(parents=True)
        removed = remove_abandoned(tmp_path)
        assert set(abandoned) <= set(removed)
        assert not any(p.exists() for p in abandoned) and all(p.exists() for p in kept)
    finally:
        alive.kill()
        alive.wait()


def test_processes_a_dead_worker_left_stopped_are_killed_with_its_folders() -> None:
    # A worker stopped by Ctrl-Z and then killed outright takes its trial's child with it; what the
    # child did not fork (a subprocess, a spawn or forkserver worker) stayed stopped for good.
    temp = Path(tempfile.gettempdir())
    dead = _dead_pid()
    child_temp = temp / f"{CHILD_TEMP_PREFIX}{dead}-stop_123"
    elsewhere = temp / f"{CHILD_TEMP_PREFIX}{os.getpid()}-live_123"  # a live worker's
    child_temp.mkdir()
    elsewhere.mkdir()
    left = subprocess.Popen(["sleep", "60"], env={**os.environ, "TMPDIR": str(child_temp)})
    other = subprocess.Popen(["sleep", "60"], env={**os.environ, "TMPDIR": str(elsewhere)})
    try:
        left.send_signal(signal.SIGSTOP)
        remove_abandoned()
        assert left.wait(timeout=10) == -signal.SIGKILL
        assert other.poll() is None and elsewhere.exists() and not child_temp.exists()
    finally:
        for process in (left, other):
            process.kill()
            process.wait()
        elsewhere.rmdir()


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="giving a folder to another user takes root (and only root could remove it anyway)",
)
def test_another_users_folder_and_a_link_are_never_removed(tmp_path: Path) -> None:
    # Run as root, every user's trial folders in a shared /tmp are removable, and a pid that looks
    # dead may be another user's worker in a pid namespace this process cannot see: only the
    # user's own folders are judged by their pid. A link is never followed, even to the user's own.
    dead, other_uid = _dead_pid(), os.getuid() + 4242
    another_users = tmp_path / f"{TRIAL_PREFIX}{dead}-other_42"
    (another_users / "run").mkdir(parents=True)
    os.chown(another_users, other_uid, other_uid)
    target = tmp_path / "the-users-data"
    (target / "kept").mkdir(parents=True)
    link = tmp_path / f"{TRIAL_PREFIX}{dead}-alink_42"
    link.symlink_to(target, target_is_directory=True)
    own = tmp_path / f"{TRIAL_PREFIX}{dead}-mine_042"
    (own / "run").mkdir(parents=True)
    removed = remove_abandoned(tmp_path)
    assert own in removed and not own.exists()
    assert another_users not in removed and (another_users / "run").is_dir()
    assert link not in removed and link.is_symlink() and (target / "kept").is_dir()


def test_disk_cache_shared_by_concurrent_trials_is_removed_by_the_last(tmp_path: Path) -> None:
    data = make_demo_dataset(tmp_path / "d", images=4, val_images=2, size=64)
    images = load_dataset(str(data)).all_images
    users_own = _write_npy(images[:1])  # the user's own cache: never removed
    first = DiskCacheClaim(str(data), images)
    written_by_first = _write_npy(images[1:3])
    second = DiskCacheClaim(str(data), images)  # starts while the first's files exist
    written_by_second = _write_npy(images[3:])
    first.release(keep=False)
    assert all(p.exists() for p in written_by_first + written_by_second)  # the second still reads them
    second.release(keep=False)
    assert not any(p.exists() for p in written_by_first + written_by_second)
    assert all(p.exists() for p in users_own)


def test_disk_cache_of_a_killed_trial_is_removed_by_the_next(tmp_path: Path) -> None:
    data = make_demo_dataset(tmp_path / "d", images=3, val_images=1, size=64)
    images = load_dataset(str(data)).all_images
    users_own = _write_npy(images[:1])
    claim = DiskCacheClaim(str(data), images)
    written = _write_npy(images[1:])
    # Its worker is killed: the claim stays, under a pid that no longer runs.
    orphan = claim._path.with_name(f"{_dead_pid()}-{claim._path.name.split('-', 1)[1]}")
    claim._path.rename(orphan)
    assert json.loads(orphan.read_text())["existing"] == [str(p) for p in users_own]
    assert orphan in remove_abandoned(tmp_path)
    assert not orphan.exists() and not any(p.exists() for p in written) and all(p.exists() for p in users_own)


_CLAIM_IN_A_CHILD = """
import json, sys
from search.trial._leftovers import DiskCacheClaim
from search.data._dataset import load_dataset
claim = DiskCacheClaim(sys.argv[1], load_dataset(sys.argv[1]).all_images)
print(json.dumps(sorted(claim._baseline)))
claim.release(keep=True)
"""


def test_a_trial_starting_while_the_last_one_removes_its_cache_waits_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another process's trial starts while the last trial on the dataset removes the files trials
    # wrote: it must wait, or it would count them as the user's own and keep them for good.
    data = make_demo_dataset(tmp_path / "d", images=3, val_images=1, size=64)
    images = load_dataset(str(data)).all_images
    claim = DiskCacheClaim(str(data), images)
    written = _write_npy(images)
    remove = _leftovers._remove_new
    started: list[subprocess.Popen[str]] = []

    def removing(images: list[Path], baseline: set[str]) -> None:
        started.append(
            subprocess.Popen(
                [sys.executable, "-c", _CLAIM_IN_A_CHILD, str(data)], stdout=subprocess.PIPE, text=True
            )
        )
        with pytest.raises(subprocess.TimeoutExpired):
            started[0].wait(timeout=1.5)  # held until the removal ends
        remove(images, baseline)

    monkeypatch.setattr(_leftovers, "_remove_new", removing)
    claim.release(keep=False)
    out, _ = started[0].communicate(timeout=60)
    assert started[0].returncode == 0
    assert json.loads(out) == [] and not any(p.exists() for p in written)


def test_a_claims_folder_others_can_write_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    planted = tmp_path / f"memfront-disk-cache-{os.getuid()}"
    planted.mkdir()
    planted.chmod(0o777)  # made by anyone in a shared /tmp: its claims could be anyone's
    data = make_demo_dataset(tmp_path / "d", images=2, val_images=1, size=64)
    with pytest.raises(OSError, match="not a folder of this user's own"):
        DiskCacheClaim(str(data), load_dataset(str(data)).all_images)


def test_a_claim_an_older_memfront_left_is_settled_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    data = make_demo_dataset(tmp_path / "d", images=3, val_images=1, size=64)
    images = load_dataset(str(data)).all_images
    users_own = _write_npy(images[:1])
    written = _write_npy(images[1:])
    legacy = tmp_path / "memfront-disk-cache"  # every user's claims, before 2026-12-07
    legacy.mkdir()
    claim = legacy / f"{_dead_pid()}-abcd1234.json"
    claim.write_text(json.dumps({"data": str(data.resolve()), "existing": [str(p) for p in users_own]}))
    assert claim in remove_abandoned(tmp_path)
    assert not any(p.exists() for p in written) and all(p.exists() for p in users_own)
