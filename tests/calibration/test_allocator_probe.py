"""The torch allocator probe's per-phase logic with a fake allocator, and its CUDA gate."""

from __future__ import annotations

from typing import Any

from profiler.probes import ProbeSet, TorchAllocatorProbe, cuda_available


class FakeAllocator:
    """Peaks that the 'step' raises; reset_peak_memory_stats brings peaks back to the current level."""

    def __init__(self) -> None:
        self.allocated = 100
        self.reserved = 128
        self.peak_alloc = 100
        self.peak_res = 128
        self.retries = 0
        self.resets = 0

    def use(self, allocated: int, reserved: int, then: int) -> None:
        self.peak_alloc = max(self.peak_alloc, allocated)
        self.peak_res = max(self.peak_res, reserved)
        self.reserved = max(self.reserved, reserved)
        self.allocated = then

    def max_memory_allocated(self) -> int:
        return self.peak_alloc

    def max_memory_reserved(self) -> int:
        return self.peak_res

    def memory_allocated(self) -> int:
        return self.allocated

    def memory_reserved(self) -> int:
        return self.reserved

    def memory_stats(self) -> dict[str, Any]:
        return {
            "active_bytes.all.peak": self.peak_alloc + 1,
            "num_alloc_retries": self.retries,
            "num_ooms": 0,
        }

    def reset_peak_memory_stats(self) -> None:
        self.resets += 1
        self.peak_alloc = self.allocated
        self.peak_res = self.reserved


def test_allocator_probe_resets_peaks_between_phases_and_reports_each() -> None:
    fake = FakeAllocator()
    probe = TorchAllocatorProbe(source=fake)
    probe.begin_step()
    probe.mark("forward")
    fake.use(allocated=900, reserved=1024, then=400)
    probe.mark("loss_backward")
    fake.use(allocated=1500, reserved=2048, then=300)
    fake.retries = 2
    probe.mark("optimizer_step")
    fake.use(allocated=350, reserved=2048, then=100)
    result = probe.end_step()
    phases = result["phases"]
    assert phases["forward"]["allocated_peak"] == 900
    assert phases["loss_backward"]["allocated_peak"] == 1500
    assert phases["optimizer_step"]["allocated_peak"] == 350  # reset: not the step's 1500
    assert phases["loss_backward"]["reserved_peak"] == 2048
    assert phases["loss_backward"]["num_alloc_retries"] == 2
    assert phases["optimizer_step"]["num_alloc_retries"] == 0
    assert phases["loss_backward"]["active_peak"] == 1501
    assert result["peak_phase"] == "loss_backward"
    assert result["peak_allocated"] == 1500
    assert result["reserved_at_allocated_peak"] == 2048
    assert fake.resets == 3


def test_probes_are_noops_without_cuda() -> None:
    if cuda_available():
        return
    probe = TorchAllocatorProbe()
    assert not probe.available
    probe.begin_step()
    probe.mark("forward")
    assert probe.end_step() == {}
    assert ProbeSet([probe]).end_step() == {}


def test_nvml_probe_is_unavailable_without_a_driver() -> None:
    from profiler.nvml import Nvml, NvmlProbe

    nvml = Nvml()
    if nvml.ok:
        return
    probe = NvmlProbe(nvml=nvml)
    assert not probe.available
    assert probe.end_step() == {}
    assert nvml.read() == {"device": None, "process": None}
    assert nvml.reason
