"""The driver's view of device memory: an NVML probe with a background sampler.

torch's allocator statistics miss what lives outside its pool: the CUDA context (kernels, cuBLAS and
cuDNN handles and workspaces), bitsandbytes' paged optimizer states (CUDA managed memory) and other
libraries' ``cudaMalloc``. NVML sees them. This module samples NVML's *device* used memory and this
process's used memory from a background thread every ``interval_s`` (at most 5 ms) and attributes
each sample to the phase that was current when it was taken, giving a driver-level peak per phase.

The sampling logic (:class:`Sampler`) takes any ``read`` callable (channel name -> bytes) and any
clock, so tests drive it with a scripted source and a fake clock and no thread. A sample is also
taken at every phase marker, so a phase shorter than the interval still has a value.

NVML calls are guarded: ``pynvml.NVMLError`` (no driver, no library, a call unsupported in a
container) makes the probe unavailable instead of failing the run (PROFILING_NOTES.md).
"""

from __future__ import annotations

import itertools
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_INTERVAL_S = 0.005
DEFAULT_INTERVAL_S = 0.002
MIB = 1 << 20

Reading = Mapping[str, int | None]
"""One sample: channel ("device", "process") -> used bytes (None: the channel could not be read)."""


# ----------------------------------------------------------------------------- the sampler
@dataclass
class Sampler:
    """Peak of each channel per phase from timed samples and phase markers (module docstring).

    ``read()`` returns the current used bytes per channel; ``clock()`` returns seconds. Call
    :meth:`start` / :meth:`stop` for a background thread, or :meth:`sample` directly (tests).
    """

    read: Callable[[], Reading]
    clock: Callable[[], float] = time.perf_counter
    interval_s: float = DEFAULT_INTERVAL_S
    samples: list[tuple[float, dict[str, int]]] = field(default_factory=list)
    markers: list[tuple[float, str]] = field(default_factory=list)
    errors: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.interval_s <= MAX_INTERVAL_S:
            raise ValueError(f"interval_s must be in (0, {MAX_INTERVAL_S}], got {self.interval_s}")

    def sample(self, t: float | None = None) -> None:
        """Take one sample now (read errors are counted, not raised)."""
        when = self.clock() if t is None else t
        try:
            values = {k: int(v) for k, v in self.read().items() if v is not None}
        except Exception:  # the sampler must never kill the step it watches
            self.errors += 1
            return
        with self._lock:
            self.samples.append((when, values))

    def mark(self, phase: str) -> None:
        """The phase ``phase`` starts now. The sample taken at the marker's time counts for the phase
        it ends and for the one it starts."""
        t = self.clock()
        self.sample(t)
        with self._lock:
            self.markers.append((t, phase))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def start(self) -> None:
        """Clear previous data, take a first sample and start the background thread."""
        self.stop()
        with self._lock:
            self.samples, self.markers = [], []
        self.errors = 0
        self._stop.clear()
        self.sample()
        self._thread = threading.Thread(target=self._run, name="tunecast-nvml-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (if running) and take a last sample."""
        thread = self._thread
        if thread is None:
            return
        self._stop.set()
        thread.join(timeout=1.0)
        self._thread = None
        self.sample()

    def phase_peaks(self) -> dict[str, dict[str, int]]:
        """Peak per phase and channel. A sample at a marker's time counts for the phase it ends and
        the one it starts; samples before the first marker count for no phase (see :meth:`baseline`)."""
        with self._lock:
            samples = list(self.samples)
            markers = list(self.markers)
        peaks: dict[str, dict[str, int]] = {}
        for i, (t0, phase) in enumerate(markers):
            t1 = markers[i + 1][0] if i + 1 < len(markers) else float("inf")
            target = peaks.setdefault(phase, {})
            for t, values in samples:
                if t0 <= t <= t1:
                    for ch, v in values.items():
                        target[ch] = max(target.get(ch, v), v)
        return peaks

    def baseline(self) -> dict[str, int]:
        """The last sample before the first marker (what was in use when the step began)."""
        with self._lock:
            first = self.markers[0][0] if self.markers else float("inf")
            before = [values for t, values in self.samples if t < first]
        return dict(before[-1]) if before else {}

    def overall_peak(self) -> dict[str, int]:
        with self._lock:
            samples = list(self.samples)
        out: dict[str, int] = {}
        for _, values in samples:
            for ch, v in values.items():
                out[ch] = max(out.get(ch, v), v)
        return out

    def stats(self) -> dict[str, Any]:
        """Sampling quality: count, median gap (s), read errors."""
        with self._lock:
            times = [t for t, _ in self.samples]
        gaps = sorted(b - a for a, b in itertools.pairwise(times))
        return {
            "samples": len(times),
            "median_interval_s": gaps[len(gaps) // 2] if gaps else None,
            "max_interval_s": gaps[-1] if gaps else None,
            "read_errors": self.errors,
            "interval_s": self.interval_s,
        }


# ----------------------------------------------------------------------------- pynvml access
class Nvml:
    """A handle on one NVML device (the one torch uses), or ``ok == False`` with the reason."""

    def __init__(self, index: int | None = None) -> None:
        self.ok = False
        self.reason = ""
        self.handle: Any = None
        self.pid = os.getpid()
        try:
            import pynvml
        except ImportError as exc:
            self.reason = f"pynvml not installed: {exc}"
            return
        self._nvml = pynvml
        try:
            pynvml.nvmlInit()
            if pynvml.nvmlDeviceGetCount() < 1:
                self.reason = "NVML sees no device"
                return
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(self._index(index))
            self.ok = True
        except pynvml.NVMLError as exc:
            self.reason = f"NVML unavailable: {exc}"

    @staticmethod
    def _index(index: int | None) -> int:
        if index is not None:
            return index
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
        return int(visible) if visible.isdigit() else 0

    def device_used(self) -> int | None:
        if not self.ok:
            return None
        try:
            return int(self._nvml.nvmlDeviceGetMemoryInfo(self.handle).used)
        except self._nvml.NVMLError:
            return None

    def process_used(self) -> int | None:
        """This process's used memory on the device (None when NVML does not report it)."""
        if not self.ok:
            return None
        try:
            procs = self._nvml.nvmlDeviceGetComputeRunningProcesses(self.handle)
        except self._nvml.NVMLError:
            return None
        for p in procs:
            if int(p.pid) == self.pid:
                used = getattr(p, "usedGpuMemory", None)
                return None if used is None else int(used)
        return None

    def read(self) -> dict[str, int | None]:
        return {"device": self.device_used(), "process": self.process_used()}

    def info(self) -> dict[str, Any]:
        """Name, total memory, driver and CUDA driver version (empty when NVML is unavailable)."""
        if not self.ok:
            return {}
        n = self._nvml
        out: dict[str, Any] = {}
        for key, fn in (
            ("name", lambda: n.nvmlDeviceGetName(self.handle)),
            ("memory_bytes", lambda: int(n.nvmlDeviceGetMemoryInfo(self.handle).total)),
            ("driver", lambda: n.nvmlSystemGetDriverVersion()),
            ("cuda_driver_version", lambda: n.nvmlSystemGetCudaDriverVersion()),
        ):
            try:
                value = fn()
                out[key] = value.decode() if isinstance(value, bytes) else value
            except n.NVMLError:
                out[key] = None
        return out


@dataclass
class NvmlProbe:
    """NVML peaks per phase (module docstring); unavailable without a driver."""

    nvml: Nvml | None = None
    interval_s: float = DEFAULT_INTERVAL_S
    name: str = "nvml"
    sampler: Sampler | None = None

    def __post_init__(self) -> None:
        if self.nvml is None:
            self.nvml = Nvml()
        if self.nvml.ok and self.sampler is None:
            self.sampler = Sampler(read=self.nvml.read, interval_s=self.interval_s)

    @property
    def available(self) -> bool:
        return self.sampler is not None

    def begin_step(self) -> None:
        if self.sampler is not None:
            self.sampler.start()

    def mark(self, phase: str) -> None:
        if self.sampler is not None:
            self.sampler.mark(phase)

    def end_step(self) -> dict[str, Any]:
        if self.sampler is None:
            return {}
        self.sampler.stop()
        return summarize_nvml(self.sampler)


def summarize_nvml(sampler: Sampler) -> dict[str, Any]:
    """Per-phase and overall peaks of each channel, the baseline before the step, sampling stats."""
    phases = sampler.phase_peaks()
    overall = sampler.overall_peak()
    return {
        "phases": {p: {f"{ch}_peak": v for ch, v in chans.items()} for p, chans in phases.items()},
        "device_peak": overall.get("device"),
        "process_peak": overall.get("process"),
        "baseline": sampler.baseline(),
        "sampling": sampler.stats(),
    }


def measure_idle_context(nvml: Nvml, device_used_before_init: int | None) -> dict[str, Any]:
    """NVML used minus torch reserved at idle, right after ``torch.cuda.init()``.

    ``device_used_before_init`` is NVML's device used memory read before this process touched CUDA,
    so the device channel can stand in where NVML does not report per-process memory (containers).
    Returns ``{}`` without CUDA.
    """
    from profiler.probes import cuda_available

    if not cuda_available() or not nvml.ok:
        return {}
    import torch

    torch.cuda.init()
    torch.cuda.synchronize()  # the primary context exists after the first synchronizing call
    reserved = int(torch.cuda.memory_reserved())
    process = nvml.process_used()
    device = nvml.device_used()
    if process is not None:
        context, source = process - reserved, "process"
    elif device is not None and device_used_before_init is not None:
        context, source = device - device_used_before_init - reserved, "device"
    else:
        context, source = None, "none"
    return {
        "context_bytes": context,
        "source": source,
        "nvml_process_used": process,
        "nvml_device_used": device,
        "nvml_device_used_before_init": device_used_before_init,
        "torch_reserved": reserved,
    }


# ----------------------------------------------------------------------------- catalog mapping
_NVML_NAMES: tuple[tuple[str, str], ...] = (
    # (regex over the lower-cased NVML name, catalog id); first match wins, memory disambiguates below
    (r"\bb200\b", "b200"),
    (r"h200.*nvl", "h200-nvl-141gb"),
    (r"\bh200\b", "h200-sxm-141gb"),  # nvidia-smi names the SXM part plainly "NVIDIA H200"
    (r"h100.*nvl", "h100-nvl-94gb"),
    (r"h100.*pcie", "h100-pcie-80gb"),
    (r"\bh100\b", "h100-sxm-80gb"),  # "NVIDIA H100 80GB HBM3" is the SXM part
    (r"a100.*pcie", "a100-pcie-{mem}"),
    (r"\ba100\b", "a100-sxm-{mem}"),
    (r"l40s", "l40s"),
    (r"\bl40\b", "l40"),
    (r"\bl4\b", "l4"),
    (r"a10g", "a10g"),
    (r"\ba10\b", "a10"),
    (r"rtx a6000", "rtx-a6000"),
    (r"rtx 6000 ada", "rtx-6000-ada"),
    (r"rtx 5090", "rtx-5090"),
    (r"rtx 4090", "rtx-4090"),
    (r"rtx 3090", "rtx-3090"),
    (r"\bt4\b", "t4"),
    (r"v100", "v100-sxm2-{mem}"),
    (r"mi300x", "mi300x"),
    (r"mi325x", "mi325x"),
)


def gpu_id_from_device(name: str, memory_bytes: int | None = None) -> str | None:
    """The SPEC.md catalog id of an NVML/torch device name (+ total memory for A100/V100 variants).

    "NVIDIA H200" -> h200-sxm-141gb, "NVIDIA H100 80GB HBM3" -> h100-sxm-80gb,
    "NVIDIA A100-SXM4-40GB" -> a100-sxm-40gb, "Tesla V100-SXM2-16GB" -> v100-sxm2-16gb.
    """
    lowered = name.lower().replace("-", " ").replace("_", " ")
    gib = (memory_bytes or 0) / (1 << 30)
    for pattern, gid in _NVML_NAMES:
        if re.search(pattern, lowered):
            if "{mem}" in gid:
                m = re.search(r"(\d+)\s*gb", lowered)
                size = int(m.group(1)) if m else round(gib)
                if gid.startswith("a100"):
                    mem = "40gb" if size and size <= 48 else "80gb"
                else:
                    mem = "16gb" if size and size <= 20 else "32gb"
                gid = gid.format(mem=mem)
            return gid
    return None


def gpu_slug(name: str, memory_bytes: int | None = None) -> str:
    """The folder name for a device's records: its catalog id, else a slug of its name."""
    gid = gpu_id_from_device(name, memory_bytes)
    if gid is not None:
        return gid
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower().replace("nvidia", "")).strip("-")
    return slug or "unknown-gpu"
