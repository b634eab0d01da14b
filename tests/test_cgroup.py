"""Finding the process's memory cgroup, and the trial cgroups' lifecycle.

This machine has the cgroup v1 memory hierarchy and a cgroup v2 without the memory controller, so the
v2 branch of :func:`search.measure._cgroup.locate_memory_cgroup` is checked on ``/proc`` texts in the kernel's
own format, with a folder standing in for the v2 mount (its ``cgroup.controllers`` says what a
delegating parent would list); the v1 branch is also checked for real by the trial tests.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from search.measure._cgroup import TrialCgroup, locate_memory_cgroup, memory_cgroup_root

V2_MOUNT = "35 24 0:30 / {point} rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate"
V1_MOUNT = "41 33 0:36 / /sys/fs/cgroup/memory rw,nosuid,relatime shared:18 - cgroup cgroup rw,memory"
OTHER_MOUNT = "22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/root rw"


def _v2_tree(tmp_path: Path, controllers: str) -> Path:
    folder = tmp_path / "user.slice" / "session-1.scope"
    folder.mkdir(parents=True)
    (folder / "cgroup.controllers").write_text(controllers + "\n")
    return folder


def test_cgroup_v2_with_the_memory_controller(tmp_path: Path) -> None:
    folder = _v2_tree(tmp_path, "cpuset cpu io memory pids")
    mountinfo = "\n".join([OTHER_MOUNT, V2_MOUNT.format(point=tmp_path)])
    assert locate_memory_cgroup("0::/user.slice/session-1.scope\n", mountinfo) == (folder, 2)


def test_cgroup_v2_without_memory_falls_back_to_v1(tmp_path: Path) -> None:
    _v2_tree(tmp_path, "cpu pids")
    mountinfo = "\n".join([OTHER_MOUNT, V2_MOUNT.format(point=tmp_path), V1_MOUNT])
    cgroups = "4:memory:/process_api/abc\n3:cpuset:/\n0::/user.slice/session-1.scope\n"
    assert locate_memory_cgroup(cgroups, mountinfo) == (Path("/sys/fs/cgroup/memory/process_api/abc"), 1)


def test_no_memory_controller_says_why(tmp_path: Path) -> None:
    _v2_tree(tmp_path, "cpu pids")
    root, why = locate_memory_cgroup(
        "0::/user.slice/session-1.scope\n", "\n".join([OTHER_MOUNT, V2_MOUNT.format(point=tmp_path)])
    )
    assert root is None and "no memory cgroup controller" in str(why)


def test_v2_peak_file_is_memory_peak(tmp_path: Path) -> None:
    (tmp_path / "memory.peak").write_text("123456789\n")
    group = TrialCgroup(path=tmp_path, version=2)
    assert group.peak_bytes() == 123456789


def test_abandoned_trial_cgroups_are_removed() -> None:
    root, version = memory_cgroup_root()
    if root is None:
        pytest.skip(f"no memory cgroup here: {version}")
    dead = subprocess.Popen(["true"])
    dead.wait()  # a worker killed before it could remove its trial's cgroup
    abandoned = root / f"memfront-{dead.pid}-memfront-trial-x"
    abandoned.mkdir()
    group = TrialCgroup.create("probe")
    assert isinstance(group, TrialCgroup)
    group.remove()
    assert not abandoned.exists() and not group.path.exists()
