"""The NVML sampler's logic, driven by a scripted source and a fake clock (no GPU, no thread)."""

from __future__ import annotations

import time

import pytest

from profiler.nvml import Sampler, gpu_id_from_device, gpu_slug, summarize_nvml


class Script:
    """A fake clock and a scripted 'used bytes' source: each read returns the next value."""

    def __init__(self, values: list[int]) -> None:
        self.values = list(values)
        self.now = 0.0
        self.reads = 0

    def clock(self) -> float:
        return self.now

    def read(self) -> dict[str, int | None]:
        self.reads += 1
        v = self.values.pop(0)
        return {"device": v, "process": v - 100}

    def advance(self, dt: float = 0.001) -> None:
        self.now += dt


def test_sampler_gives_the_peak_of_each_phase_between_markers() -> None:
    src = Script([10, 50, 20, 200, 150, 30, 500, 40, 60])
    s = Sampler(read=src.read, clock=src.clock, interval_s=0.002)
    s.sample()  # 10: before the step (baseline)
    src.advance()
    s.mark("forward")  # 50
    src.advance()
    s.sample()  # 20
    src.advance()
    s.sample()  # 200
    src.advance()
    s.mark("loss_backward")  # 150: ends forward, starts loss_backward
    src.advance()
    s.sample()  # 30
    src.advance()
    s.sample()  # 500
    src.advance()
    s.mark("optimizer_step")  # 40
    src.advance()
    s.sample()  # 60
    peaks = s.phase_peaks()
    assert peaks["forward"]["device"] == 200
    assert peaks["loss_backward"]["device"] == 500
    assert peaks["optimizer_step"]["device"] == 60
    assert peaks["loss_backward"]["process"] == 400
    assert s.baseline() == {"device": 10, "process": -90}
    assert [p for _, p in s.markers] == ["forward", "loss_backward", "optimizer_step"]


def test_sample_at_a_marker_counts_for_the_phase_it_ends_and_the_one_it_starts() -> None:
    src = Script([5, 900, 7])
    s = Sampler(read=src.read, clock=src.clock)
    s.mark("forward")  # 5
    src.advance()
    s.mark("loss_backward")  # 900: the boundary value belongs to both phases
    src.advance()
    s.mark("layer_backward")  # 7
    peaks = s.phase_peaks()
    assert peaks["forward"]["device"] == 900
    assert peaks["loss_backward"]["device"] == 900
    assert peaks["layer_backward"]["device"] == 7


def test_a_short_phase_without_thread_samples_still_has_a_peak() -> None:
    src = Script([1, 2, 3])
    s = Sampler(read=src.read, clock=src.clock)
    s.mark("forward")
    s.mark("loss_backward")  # same instant: zero-length phase
    assert set(s.phase_peaks()) == {"forward", "loss_backward"}


def test_read_errors_are_counted_not_raised() -> None:
    def broken() -> dict[str, int | None]:
        raise RuntimeError("NVML went away")

    s = Sampler(read=broken, clock=lambda: 0.0)
    s.sample()
    s.mark("forward")
    assert s.errors == 2
    assert s.phase_peaks() == {"forward": {}}


def test_channels_that_read_none_are_skipped() -> None:
    s = Sampler(read=lambda: {"device": 10, "process": None}, clock=lambda: 1.0)
    s.mark("forward")
    assert s.phase_peaks() == {"forward": {"device": 10}}


def test_interval_above_five_ms_is_rejected() -> None:
    with pytest.raises(ValueError):
        Sampler(read=lambda: {}, interval_s=0.01)


def test_background_thread_samples_between_markers_and_stops() -> None:
    values = iter(range(1, 10_000_000))
    s = Sampler(read=lambda: {"device": next(values)}, interval_s=0.002)
    s.start()
    s.mark("forward")
    time.sleep(0.08)
    s.mark("loss_backward")
    time.sleep(0.02)
    s.stop()
    stats = s.stats()
    assert stats["samples"] >= 6  # first + markers + last + at least a few thread samples
    peaks = s.phase_peaks()
    assert peaks["loss_backward"]["device"] > peaks["forward"]["device"]  # a growing counter
    n = len(s.samples)
    time.sleep(0.02)
    assert len(s.samples) == n  # stopped
    summary = summarize_nvml(s)
    assert summary["device_peak"] == max(v["device"] for _, v in s.samples)


@pytest.mark.parametrize(
    ("name", "memory_gib", "expected"),
    [
        ("NVIDIA H200", 140.4, "h200-sxm-141gb"),
        ("NVIDIA H200 NVL", 140.4, "h200-nvl-141gb"),
        ("NVIDIA H100 80GB HBM3", 79.6, "h100-sxm-80gb"),
        ("NVIDIA H100 PCIe", 79.6, "h100-pcie-80gb"),
        ("NVIDIA A100-SXM4-40GB", 39.4, "a100-sxm-40gb"),
        ("NVIDIA A100-SXM4-80GB", 79.2, "a100-sxm-80gb"),
        ("NVIDIA A100 80GB PCIe", 79.2, "a100-pcie-80gb"),
        ("Tesla V100-SXM2-16GB", 15.8, "v100-sxm2-16gb"),
        ("Tesla T4", 14.7, "t4"),
        ("NVIDIA L40S", 44.4, "l40s"),
        ("NVIDIA L4", 22.0, "l4"),
        ("NVIDIA A10G", 22.0, "a10g"),
        ("NVIDIA GeForce RTX 4090", 23.6, "rtx-4090"),
        ("NVIDIA RTX 6000 Ada Generation", 47.5, "rtx-6000-ada"),
    ],
)
def test_nvml_device_names_map_to_catalog_ids(name: str, memory_gib: float, expected: str) -> None:
    from estimator.gpus import gpu_ids

    assert gpu_id_from_device(name, int(memory_gib * (1 << 30))) == expected
    assert expected in gpu_ids()


def test_unknown_device_gets_a_slug_not_an_id() -> None:
    assert gpu_id_from_device("NVIDIA Quantum X9") is None
    assert gpu_slug("NVIDIA Quantum X9") == "quantum-x9"
