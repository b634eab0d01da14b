"""GPU figures from NVML. No NVIDIA driver exists on this machine: the absent case is real, and the
present case runs against a stand-in ``pynvml`` module (the one thing mocked, since a GPU cannot
exist here) that answers as NVML does."""

from __future__ import annotations

import os
import sys
import types
from dataclasses import dataclass

import pytest

from search.child.compat import decide_amp
from search.measure._gpu import NvmlProbe


@dataclass
class _Process:
    pid: int
    usedGpuMemory: int | None  # NVML's own field name


def _fake_nvml(processes_by_device: list[list[_Process]]) -> types.ModuleType:
    module = types.ModuleType("pynvml")
    module.nvmlInit = lambda: None  # type: ignore[attr-defined]
    module.nvmlShutdown = lambda: None  # type: ignore[attr-defined]
    module.nvmlDeviceGetCount = lambda: len(processes_by_device)  # type: ignore[attr-defined]
    module.nvmlDeviceGetHandleByIndex = lambda index: index  # type: ignore[attr-defined]
    module.nvmlDeviceGetComputeRunningProcesses = lambda handle: processes_by_device[handle]  # type: ignore[attr-defined]
    return module


def test_without_nvml_the_figure_is_none_not_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = types.ModuleType("pynvml")

    def init() -> None:
        raise OSError("NVML Shared Library Not Found")

    broken.nvmlInit = init  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", broken)
    probe = NvmlProbe()
    assert not probe.available and "NVML Shared Library Not Found" in (probe.unavailable_reason or "")
    assert probe.used_bytes({1, 2}) is None


def test_sums_the_trees_processes_over_all_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    devices = [
        [_Process(100, 500), _Process(999, 7000)],  # 999: another user's job on the same GPU
        [_Process(101, 300), _Process(102, None)],  # None: NVML could not attribute it
    ]
    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml(devices))
    probe = NvmlProbe()
    assert probe.available
    assert probe.used_bytes({100, 101, 102}) == 800
    # None of these processes is the trial's: no figure, not 0 bytes (issue 15).
    assert probe.used_bytes({5}) is None
    assert probe.reason is None  # the trial's processes were matched before
    probe.close()
    assert probe.used_bytes({100}) is None


def test_amp_runs_only_where_cuda_does() -> None:
    assert decide_amp(requested=True, cuda=True)[0] is True
    on_cpu, reason = decide_amp(requested=True, cuda=False)
    assert on_cpu is False and "CUDA" in reason
    assert decide_amp(requested=False, cuda=True) == (False, "off as requested")


def test_host_pids_seen_from_a_container_give_no_figure_and_say_why(monkeypatch: pytest.MonkeyPatch) -> None:
    # Inside a container, NVML lists the host's PIDs: the trial's own (small, namespaced) never match.
    devices = [[_Process(48213, 900 * 1024**2), _Process(48250, 100 * 1024**2)]]
    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml(devices))
    probe = NvmlProbe()
    assert probe.used_bytes({12, 13}) is None
    assert probe.reason is not None and "none with the trial's PIDs" in probe.reason


def test_nvml_that_lists_nothing_or_refuses_to_list_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    # Some containers hide every process from NVML; under gVisor the listing call is not supported.
    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml([[]]))
    hidden = NvmlProbe()
    assert hidden.used_bytes({12}) is None
    assert hidden.reason is not None and "lists no compute process" in hidden.reason
    refusing = _fake_nvml([[]])

    def not_supported(handle: int) -> list[_Process]:
        raise RuntimeError("Not Supported")

    refusing.nvmlDeviceGetComputeRunningProcesses = not_supported  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", refusing)
    probe = NvmlProbe()
    assert probe.used_bytes({12}) is None
    assert probe.reason is not None and "could not list" in probe.reason and "Not Supported" in probe.reason


def test_cuda_out_of_memory_is_told_apart_from_other_errors() -> None:
    # torch's own exception types, raised here without a GPU: what the child catches on one.
    import torch

    from search.child._common import is_cuda_oom

    assert is_cuda_oom(torch, torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_cuda_oom(torch, torch.AcceleratorError("CUDA error: out of memory"))
    assert is_cuda_oom(torch, RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED in cublasCreate"))
    assert not is_cuda_oom(torch, RuntimeError("shape '[8, 3]' is invalid for input of size 7"))
    assert not is_cuda_oom(torch, ValueError("out of memory"))  # not CUDA's: a framework's own check


@pytest.mark.parametrize(
    ("inherited", "device", "narrowed", "visible"),
    [
        (None, "1", True, "1"),
        (None, "cuda:2", True, "2"),
        ("2,3", "1", True, "3"),  # a scheduler's list: the second of its GPUs, not physical GPU 1
        ("2,3", "cuda:1", True, "3"),
        ("GPU-8f2a, GPU-77c1", "cuda:0", True, "GPU-8f2a"),
        ("0,-1,2", "2", False, "0,-1,2"),  # CUDA reads no further than -1: GPU 2 is not visible
        (None, "cuda", False, None),
        ("2,3", "5", False, "2,3"),  # not visible: left to the framework's own check
        ("2,3", "cpu", False, "2,3"),
        (None, "mps", False, None),
    ],
)
def test_a_trial_sees_only_its_device_counted_as_torch_counts(
    monkeypatch: pytest.MonkeyPatch, inherited: str | None, device: str, narrowed: bool, visible: str | None
) -> None:
    # Both frameworks' dataloaders give each visible GPU cpu_count // device_count workers: with every
    # GPU of a node visible, an ultralytics trial on GPU 3 of 8 started an eighth of the workers the
    # memory model counted.
    from search.child._common import only_visible_device

    if inherited is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", inherited)
    assert only_visible_device(device) is narrowed
    assert os.environ.get("CUDA_VISIBLE_DEVICES") == visible


@pytest.mark.parametrize(
    ("requested", "narrowed", "cuda", "devices"),
    [
        ("1", True, True, ("cuda:0", "0")),  # the only visible GPU: index 0 for torch and ultralytics
        ("cuda:1", False, True, ("cuda:1", "1")),
        ("1", False, False, ("cpu", "1")),  # no CUDA: ultralytics' own check refuses the request
        ("cpu", False, True, ("cpu", "cpu")),
        ("mps", False, True, ("mps", "mps")),
    ],
)
def test_an_ultralytics_trial_gives_torch_and_ultralytics_the_same_device(
    requested: str, narrowed: bool, cuda: bool, devices: tuple[str, str]
) -> None:
    from search.child.ultralytics_compat import trial_device

    assert trial_device(requested, narrowed=narrowed, cuda=cuda) == devices


@pytest.mark.parametrize(
    ("inherited", "device", "given", "visible"),
    [
        (None, "1", "", "1"),  # nothing inherited: the index is the GPU
        ("2,3", "1", "", "3"),  # a scheduler's list: the second of its GPUs, not physical GPU 1
        ("GPU-8f2a, GPU-77c1", "cuda:0", "", "GPU-8f2a"),  # UUIDs, which yolov5 could not take
        ("2,3", "5", "5", "2,3"),  # not visible: left to yolov5's own check
        ("2,3", "cpu", "cpu", "2,3"),
    ],
)
def test_a_yolov5_trial_sees_only_its_device_counted_as_torch_counts(
    monkeypatch: pytest.MonkeyPatch, inherited: str | None, device: str, given: str, visible: str
) -> None:
    from search.child.compat import narrow_visible_devices

    if inherited is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", inherited)
    assert narrow_visible_devices(device) == given
    assert os.environ.get("CUDA_VISIBLE_DEVICES") == visible
