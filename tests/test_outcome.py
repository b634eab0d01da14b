"""The trial's record from its events: the kernel floor (what the sampler missed, the kernel's
high-water mark still saw) and a CUDA out-of-memory error's figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from search.child._common import EventWriter, write_cuda_oom
from search.trial._config import TrialConfig, TrialLimits
from search.trial._outcome import ChildEvents, apply_kernel_floor, build_record

MIB = 1024**2


def _memory(**fields: object) -> dict[str, object]:
    return {"method": "sampled", "max_processes": 1, "vmhwm_bytes": None, **fields}


def test_a_missed_spike_raises_the_peak_to_the_high_water_mark_less_shared_pages() -> None:
    # The last exact read found 40 MiB of the process's file pages shared with other processes:
    # its PSS at the kernel's high-water mark was at least 1000 - 40 MiB.
    memory = _memory(
        peak_host_bytes=900 * MIB,
        peak_host_upper_bytes=905 * MIB,
        ru_maxrss_bytes=1000 * MIB,
        root_shared_discount_bytes=40 * MIB,
    )
    apply_kernel_floor(memory)
    assert memory["peak_host_bytes"] == 960 * MIB
    assert memory["peak_host_upper_bytes"] == 960 * MIB
    assert "high-water mark" in str(memory["method"])
    assert memory["peak_in_shutdown"]  # a lone process, above its every VmHWM read: its shutdown


def test_a_high_water_mark_that_may_be_the_spawners_image_is_not_the_trials() -> None:
    # Linux keeps the pre-exec image's high-water mark in ru_maxrss: a trial spawned from a process
    # whose VmHWM is 780 MiB reports at least 780 MiB there, whatever it used. The last VmHWM read
    # stands in.
    spawned_big = _memory(
        peak_host_bytes=305 * MIB, ru_maxrss_bytes=790 * MIB, spawner_hwm_bytes=780 * MIB,
        vmhwm_bytes=310 * MIB, root_shared_discount_bytes=8 * MIB,
    )  # fmt: skip
    apply_kernel_floor(spawned_big)
    assert spawned_big["peak_host_bytes"] == 305 * MIB
    # Well above the spawner's memory, ru_maxrss is the trial's own and still raises the peak.
    spawned_small = _memory(
        peak_host_bytes=900 * MIB, ru_maxrss_bytes=1000 * MIB, spawner_hwm_bytes=150 * MIB,
        vmhwm_bytes=950 * MIB, root_shared_discount_bytes=40 * MIB,
    )  # fmt: skip
    apply_kernel_floor(spawned_small)
    assert spawned_small["peak_host_bytes"] == 960 * MIB


# A spawner that once held 1.5 GiB and freed it starts a child that holds 200 MiB: first where the
# kernel refuses to reset the spawner's high-water mark, then as the supervisor does. For each, the
# spawner's mark the supervisor records, the child's ru_maxrss from wait4, and the child's own VmHWM.
_CHILD_OF_200_MIB = (
    "block = b'1' * (200 << 20)\n"
    "print([line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM:')][0])"
)
_SPAWNER_THAT_FREED_ITS_MEMORY = """
import json, os, subprocess, sys
from search.trial import _process

block = b"1" * (1536 << 20)  # touched: resident until freed
del block  # unmapped at once (a malloc this large is a mapping of its own); VmHWM stays
reset, figures = _process.reset_own_vmhwm, {}
for case in ("refused", "reset"):
    _process.reset_own_vmhwm = reset if case == "reset" else lambda: False
    child, spawner_hwm = _process.spawn([sys.executable, "-c", sys.argv[1]], stdout=subprocess.PIPE)
    own = int(child.stdout.read()) * 1024
    _, _, usage = os.wait4(child.pid, 0)
    child.returncode = 0
    child.stdout.close()
    figures[case] = {"spawner_hwm_bytes": spawner_hwm, "ru_maxrss_bytes": usage.ru_maxrss * 1024, "own": own}
print(json.dumps(figures))
"""


def test_a_spawners_freed_memory_does_not_inflate_the_trials_peak() -> None:
    # Real kernel figures, not stand-ins: subprocess starts children with vfork, and Linux then
    # keeps the spawner's high-water mark (not its resident size) in the child's ru_maxrss. Compared
    # with the spawner's resident size, as before, a spawner that had once held 1.5 GiB (a notebook
    # that loaded a dataset) made a 200 MiB child's peak read 1.5 GiB.
    out = subprocess.run(
        [sys.executable, "-c", _SPAWNER_THAT_FREED_ITS_MEMORY, _CHILD_OF_200_MIB],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    figures = json.loads(out.stdout)
    for case, measured in figures.items():
        memory = _memory(
            peak_host_bytes=measured["own"], vmhwm_bytes=measured["own"], root_shared_discount_bytes=0,
            ru_maxrss_bytes=measured["ru_maxrss_bytes"], spawner_hwm_bytes=measured["spawner_hwm_bytes"],
        )  # fmt: skip
        apply_kernel_floor(memory)
        assert 200 * MIB < memory["peak_host_bytes"] < 300 * MIB, (case, measured)
    # Reset, the spawner's mark is its small resident size, and ru_maxrss the child's own again (so
    # it still catches what the sampler missed); refused, both are the 1.5 GiB, left out.
    reset, refused = figures["reset"], figures["refused"]
    assert reset["spawner_hwm_bytes"] < 200 * MIB and reset["ru_maxrss_bytes"] < 300 * MIB, reset
    assert refused["spawner_hwm_bytes"] > 1536 * MIB and refused["ru_maxrss_bytes"] > 1536 * MIB, refused


def test_the_discount_is_in_bytes_not_a_ratio_taken_early() -> None:
    # Read early, the process was 300 MiB with 100 MiB of shared pages counted as 50 MiB of PSS (a
    # ratio of 0.83); it then grew 1 GiB of private memory. Scaling its high-water mark by the early
    # ratio would put the floor ~220 MiB under its true PSS; the byte discount keeps it exact.
    memory = _memory(
        peak_host_bytes=1000 * MIB,
        ru_maxrss_bytes=1324 * MIB,
        root_shared_discount_bytes=50 * MIB,
    )
    apply_kernel_floor(memory)
    assert memory["peak_host_bytes"] == 1274 * MIB


def test_a_sampled_peak_above_the_floor_is_kept() -> None:
    memory = _memory(
        peak_host_bytes=990 * MIB,
        ru_maxrss_bytes=1000 * MIB,
        root_shared_discount_bytes=40 * MIB,
    )
    apply_kernel_floor(memory)
    assert memory["peak_host_bytes"] == 990 * MIB
    assert memory["method"] == "sampled"


def test_with_workers_the_trees_highest_high_water_mark_raises_the_peak_too() -> None:
    # Interpreter shutdown spikes after the workers are gone: a tree's sampled peak missed it as a
    # lone process's does (a trial with a worker read 988 MiB where the same config without read
    # 1055 MiB, both at ru_maxrss 1057 MiB). ru_maxrss is the highest VmHWM of the main process and
    # its reaped workers; every anonymous page of either is the tree's own, counted in full.
    memory = _memory(
        max_processes=3,
        peak_host_bytes=988 * MIB,
        ru_maxrss_bytes=1057 * MIB,
        vmhwm_bytes=1000 * MIB,
        root_shared_discount_bytes=30 * MIB,
    )
    apply_kernel_floor(memory)
    assert memory["peak_host_bytes"] == 1027 * MIB
    # Above the main process's last VmHWM read: not when the sampler's peak was; with workers, not
    # known to be the shutdown either (ru_maxrss may be a worker's).
    assert memory["peak_time_s"] is None and not memory["peak_in_shutdown"]


def test_without_an_exact_read_nothing_is_raised() -> None:
    memory = _memory(peak_host_bytes=900 * MIB, ru_maxrss_bytes=1000 * MIB, root_shared_discount_bytes=None)
    apply_kernel_floor(memory)
    assert memory["peak_host_bytes"] == 900 * MIB


def test_a_cuda_out_of_memory_keeps_the_allocators_peak(tmp_path: Path) -> None:
    # A GPU cannot exist here: a stand-in for torch.cuda's peak counters and a CUDA device, written
    # through the child's own event writer, read back by the supervisor's record builder.
    gib = 1024**3
    cuda = SimpleNamespace(
        OutOfMemoryError=RuntimeError,
        max_memory_reserved=lambda device: 3 * gib,
        max_memory_allocated=lambda device: 2 * gib,
    )
    torch, device = SimpleNamespace(cuda=cuda), SimpleNamespace(type="cuda")
    path = tmp_path / "events.jsonl"
    events = EventWriter(str(path))
    events.write("start", cuda=True, device="cuda:0", gpu_total_bytes=80 * gib)
    error = RuntimeError("CUDA out of memory. Tried to allocate 1.00 GiB\nmore")
    write_cuda_oom(events, torch, device, error)
    read = ChildEvents(path)
    read.poll()
    record = build_record(
        TrialConfig(data="d.yaml", device="0"), TrialLimits(), read, {"peak_host_bytes": gib}, 3, {},
        wall=10.0, phases={}, log_tail=[], rusage_maxrss=None, nvml_peak=None, nvml_reason=None,
    )  # fmt: skip
    assert record.status == "memory_limit" and "Tried to allocate 1.00 GiB" in (record.error or "")
    assert record.peak_gpu_bytes == 3 * gib and record.gpu["allocator_reserved_peak_bytes"] == 3 * gib
