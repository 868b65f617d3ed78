"""Memory probes behind one interface: what the step runner calls at each phase boundary.

A probe watches one source of truth about device memory during a training step::

    probe.begin_step()          # before the step: reset counters, start sampling
    probe.mark("forward")       # at each phase boundary (the phase that starts now)
    ...
    result = probe.end_step()   # after the step: per-phase peaks, as JSON-ready data

Two probes exist (torchtune's three peaks plus what the driver sees):

``TorchAllocatorProbe``  (this module) torch's caching allocator, per phase:
                         ``max_memory_allocated``, ``max_memory_reserved``,
                         ``memory_stats()["active_bytes.all.peak"]`` and the ``num_alloc_retries``
                         added during the phase; ``reset_peak_memory_stats`` between phases.
``NvmlProbe``            (:mod:`profiler.nvml`) the driver's view: device and per-process used memory,
                         sampled by a background thread, peak per phase. It alone sees the CUDA
                         context, cuBLAS workspaces and paged (managed-memory) optimizer states.

Every CUDA call is gated on ``torch.cuda.is_available()`` (PROFILING_NOTES.md: on a CPU build the
allocator statistics silently read 0); a probe that cannot measure says so through ``available``
and returns ``{}``. The allocator source is injectable so the phase logic runs in CPU tests.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol


class Probe(Protocol):
    """What a step runner needs from a memory probe."""

    name: str

    @property
    def available(self) -> bool:
        """Whether this probe can measure on this machine (False: every call is a no-op)."""
        ...

    def begin_step(self) -> None:
        """Reset per-step state; called right before the first phase."""
        ...

    def mark(self, phase: str) -> None:
        """The phase ``phase`` starts now (the previous one, if any, ends)."""
        ...

    def end_step(self) -> dict[str, Any]:
        """The last phase ends; return ``{"phases": {phase: {...}}, ...}`` (``{}`` if unavailable)."""
        ...


class ProbeSet:
    """Several probes driven as one (the order of calls is the order of the probes)."""

    def __init__(self, probes: Iterable[Probe]) -> None:
        self.probes = [p for p in probes if p.available]

    def begin_step(self) -> None:
        for p in self.probes:
            p.begin_step()

    def mark(self, phase: str) -> None:
        for p in self.probes:
            p.mark(phase)

    def end_step(self) -> dict[str, dict[str, Any]]:
        """Results keyed by probe name."""
        return {p.name: p.end_step() for p in self.probes}


# ----------------------------------------------------------------------------- torch allocator
class AllocatorSource(Protocol):
    """The subset of ``torch.cuda`` the allocator probe reads (injectable for tests)."""

    def max_memory_allocated(self) -> int: ...
    def max_memory_reserved(self) -> int: ...
    def memory_allocated(self) -> int: ...
    def memory_reserved(self) -> int: ...
    def memory_stats(self) -> dict[str, Any]: ...
    def reset_peak_memory_stats(self) -> None: ...


class _TorchCuda:
    """``torch.cuda`` on the current device, imported lazily."""

    def __init__(self) -> None:
        import torch

        self._cuda = torch.cuda

    def max_memory_allocated(self) -> int:
        return int(self._cuda.max_memory_allocated())

    def max_memory_reserved(self) -> int:
        return int(self._cuda.max_memory_reserved())

    def memory_allocated(self) -> int:
        return int(self._cuda.memory_allocated())

    def memory_reserved(self) -> int:
        return int(self._cuda.memory_reserved())

    def memory_stats(self) -> dict[str, Any]:
        return dict(self._cuda.memory_stats())

    def reset_peak_memory_stats(self) -> None:
        self._cuda.reset_peak_memory_stats()


def cuda_available() -> bool:
    """True when torch is importable and sees a CUDA device (never raises)."""
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # a broken torch install is "no CUDA" for a probe
        return False


@dataclass
class PhasePeak:
    """torch allocator peaks of one phase, in bytes."""

    allocated: int
    reserved: int
    active: int
    alloc_retries: int
    ooms: int
    allocated_at_start: int
    reserved_at_start: int

    def to_dict(self) -> dict[str, int]:
        return {
            "allocated_peak": self.allocated,
            "reserved_peak": self.reserved,
            "active_peak": self.active,
            "num_alloc_retries": self.alloc_retries,
            "num_ooms": self.ooms,
            "allocated_at_start": self.allocated_at_start,
            "reserved_at_start": self.reserved_at_start,
        }


@dataclass
class TorchAllocatorProbe:
    """Per-phase peaks of torch's caching allocator (module docstring).

    ``source`` defaults to ``torch.cuda`` when CUDA is available; pass a fake for tests.
    """

    source: AllocatorSource | None = None
    name: str = "allocator"
    phases: dict[str, PhasePeak] = field(default_factory=dict)
    _current: str | None = None
    _retries0: int = 0
    _ooms0: int = 0
    _alloc0: int = 0
    _reserved0: int = 0

    def __post_init__(self) -> None:
        if self.source is None and cuda_available():
            self.source = _TorchCuda()

    @property
    def available(self) -> bool:
        return self.source is not None

    def _counters(self) -> tuple[int, int]:
        assert self.source is not None
        stats = self.source.memory_stats()
        return int(stats.get("num_alloc_retries", 0)), int(stats.get("num_ooms", 0))

    def _open(self, phase: str) -> None:
        assert self.source is not None
        self.source.reset_peak_memory_stats()
        self._current = phase
        self._retries0, self._ooms0 = self._counters()
        self._alloc0 = self.source.memory_allocated()
        self._reserved0 = self.source.memory_reserved()

    def _close(self) -> None:
        if self._current is None or self.source is None:
            return
        stats = self.source.memory_stats()
        retries, ooms = self._counters()
        peak = PhasePeak(
            allocated=self.source.max_memory_allocated(),
            reserved=self.source.max_memory_reserved(),
            active=int(stats.get("active_bytes.all.peak", 0)),
            alloc_retries=retries - self._retries0,
            ooms=ooms - self._ooms0,
            allocated_at_start=self._alloc0,
            reserved_at_start=self._reserved0,
        )
        previous = self.phases.get(self._current)
        if previous is not None:  # a phase entered twice: keep the larger peaks, add the counters
            peak = PhasePeak(
                allocated=max(peak.allocated, previous.allocated),
                reserved=max(peak.reserved, previous.reserved),
                active=max(peak.active, previous.active),
                alloc_retries=peak.alloc_retries + previous.alloc_retries,
                ooms=peak.ooms + previous.ooms,
                allocated_at_start=previous.allocated_at_start,
                reserved_at_start=previous.reserved_at_start,
            )
        self.phases[self._current] = peak
        self._current = None

    def begin_step(self) -> None:
        self.phases = {}
        self._current = None

    def mark(self, phase: str) -> None:
        if self.source is None:
            return
        self._close()
        self._open(phase)

    def end_step(self) -> dict[str, Any]:
        if self.source is None:
            return {}
        self._close()
        return summarize_allocator(self.phases)


def summarize_allocator(phases: dict[str, PhasePeak]) -> dict[str, Any]:
    """``{"phases": {...}, "peak_allocated", "peak_reserved", "peak_active", "peak_phase", ...}``."""
    if not phases:
        return {"phases": {}}
    peak_phase = max(phases, key=lambda p: phases[p].allocated)
    return {
        "phases": {p: v.to_dict() for p, v in phases.items()},
        "peak_phase": peak_phase,
        "peak_allocated": max(v.allocated for v in phases.values()),
        "peak_reserved": max(v.reserved for v in phases.values()),
        "peak_active": max(v.active for v in phases.values()),
        "reserved_at_allocated_peak": phases[peak_phase].reserved,
        "num_alloc_retries": sum(v.alloc_retries for v in phases.values()),
    }
