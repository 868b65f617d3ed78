"""Live-tensor tracer: which bytes are alive at each phase peak of a training step, and what they are.

How the numbers are measured
----------------------------
:class:`LiveTensorTracer` is a ``TorchDispatchMode``. Every aten op that runs while it is active
passes through :meth:`LiveTensorTracer.__torch_dispatch__`; after the op runs, the tracer looks at the
*untyped storage* of every tensor the op returned:

* a storage it has not seen yet is counted once, with ``storage.nbytes()`` bytes, keyed by the
  storage's C++ identity (``_cdata``); views and in-place results share their base's storage and
  therefore add nothing;
* a ``weakref.finalize`` on the storage's Python object removes it when the storage dies (PyTorch
  keeps one Python object per storage alive for as long as the C++ storage lives, so the finalizer
  fires exactly when the last tensor that views it is freed).

Tensors that exist *before* the step (parameters, buffers, quantization constants, optimizer states)
are registered with :meth:`LiveTensorTracer.track` and counted the same way.

``live_bytes`` is therefore the sum of the sizes of all distinct storages alive right now. It is what
``torch.cuda.memory_allocated()`` would report without the caching allocator's 512-byte rounding and
without allocations that bypass the dispatcher (none matter in a training step: the CPU RNG state that
checkpointing stashes is one such, 5 kB).

Phases and peaks
----------------
The harness names the current phase with :meth:`LiveTensorTracer.set_phase` (see ``harness.py`` for
where each boundary is). For each phase the tracer keeps the highest ``live_bytes`` seen (including
the bytes alive when the phase starts) and a snapshot of the storages alive at that moment.

Categories
----------
Each storage gets one category for its whole life, decided when the step is over (so a tensor that
is born as the output of a matmul in backward and later becomes ``param.grad`` counts as a gradient
from its first byte):

``weights``            frozen parameters, buffers and quantization constants (registered by the harness)
``trainable_params``   parameters with ``requires_grad`` (registered by the harness)
``gradients``          storages that end up as some trainable parameter's ``.grad`` (relabelled by a
                       post-accumulate-grad hook the harness installs)
``optimizer_states``   every tensor in ``optimizer.state`` at the start of the step (registered)
``activations``        storages created by a *forward computation* that are still alive when that
                       computation ends: the tensors autograd saved for backward, the forward's outputs
                       (the loss), and the token batch. A forward computation is the ``forward`` phase,
                       or, during backward, each maximal run of ops executed with grad mode enabled
                       (that is how gradient-checkpointing recomputation runs: the backward engine
                       itself runs with grad mode off). A recomputed layer's saved tensors are
                       therefore activations, not transients.
``transient``          everything else: temporaries that die inside the computation that made them,
                       gradients flowing backward, optimizer-step temporaries (foreach AdamW).

Each phase also reports ``activations_head``: the part of ``activations`` created in the forward's
lm_head/loss part (after the final norm's output exists: logits, their fp32 copy, log-softmax), so
the logits term can be calibrated apart from the per-layer terms.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from profiler import CATEGORIES, PHASES

_FORWARD_PHASES = frozenset({"forward"})
_BACKWARD_PHASES = frozenset({"loss_backward", "layer_backward"})


@dataclass
class PhaseStats:
    """The peak of one phase: bytes alive at the peak, split by category, and the op that made it."""

    peak: int
    by_category: dict[str, int]
    at_op: str
    activations_head: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON form used in calibration records."""
        return {
            "peak": self.peak,
            "by_category": dict(self.by_category),
            "activations_head": self.activations_head,
            "at_op": self.at_op,
        }


@dataclass
class TraceResult:
    """What one traced step measured. ``peak_allocated`` is the maximum over the phase peaks."""

    peak_allocated: int
    phases: dict[str, PhaseStats]
    start_bytes: int
    start_by_category: dict[str, int]
    end_bytes: int
    peak_phase: str = field(default="")

    def to_dict(self) -> dict[str, Any]:
        """JSON form used in calibration records (the ``measured`` block minus timing)."""
        return {
            "peak_allocated": self.peak_allocated,
            "peak_phase": self.peak_phase,
            "phases": {name: stats.to_dict() for name, stats in self.phases.items()},
            "start": {"bytes": self.start_bytes, "by_category": dict(self.start_by_category)},
            "end_bytes": self.end_bytes,
        }


class _PhasePeak:
    """Running peak of one phase: bytes and the (serial, nbytes) of every storage alive at the peak."""

    __slots__ = ("at_op", "peak", "snapshot")

    def __init__(self) -> None:
        self.peak = -1
        self.snapshot: list[tuple[int, int]] = []
        self.at_op = ""


class LiveTensorTracer(TorchDispatchMode):
    """Count the bytes of every distinct live storage, per phase, with categories (module docstring).

    Use it as a context manager around the part of the step to measure; call :meth:`track` for the
    tensors that already exist, :meth:`set_phase` at each boundary and :meth:`result` at the end.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live_bytes = 0
        self._live: dict[int, list[int]] = {}  # storage _cdata -> [serial, nbytes]
        self._next_serial = 0
        self._labels: dict[int, str] = {}  # serial -> category (final, retroactive)
        self._activations: set[int] = set()
        self._region: list[int] | None = None  # serials created in the open forward computation
        self._phase: str | None = None
        self._peaks: dict[str, _PhasePeak] = {}
        self._start_snapshot: list[tuple[int, int]] | None = None
        self._last_op = "start"
        self._in_head = False
        self._head: set[int] = set()  # serials created in the forward's lm_head/loss part

    # ----------------------------------------------------------------- counting storages
    def _storage_of(self, tensor: torch.Tensor) -> Any | None:
        try:
            storage = tensor.untyped_storage()
        except (RuntimeError, NotImplementedError):  # sparse / nested tensors have none
            return None
        return storage

    def _add(self, tensor: torch.Tensor) -> int | None:
        """Count ``tensor``'s storage if it is new; return its serial (None if it has no storage)."""
        storage = self._storage_of(tensor)
        if storage is None:
            return None
        key = storage._cdata
        entry = self._live.get(key)
        nbytes = int(storage.nbytes())
        if entry is not None:
            if entry[1] != nbytes:  # resized in place (out= ops)
                self.live_bytes += nbytes - entry[1]
                entry[1] = nbytes
            return entry[0]
        serial = self._next_serial
        self._next_serial += 1
        self._live[key] = [serial, nbytes]
        self.live_bytes += nbytes
        finalizer = weakref.finalize(storage, self._free, key, serial)
        finalizer.atexit = False
        if self._region is not None:
            self._region.append(serial)
        if self._in_head:
            self._head.add(serial)
        return serial

    def _free(self, key: int, serial: int) -> None:
        entry = self._live.get(key)
        if entry is not None and entry[0] == serial:
            del self._live[key]
            self.live_bytes -= entry[1]

    def _serial_of(self, tensor: torch.Tensor) -> int | None:
        storage = self._storage_of(tensor)
        if storage is None:
            return None
        entry = self._live.get(storage._cdata)
        return None if entry is None else entry[0]

    def _note_peak(self) -> None:
        if self._phase is None:
            return
        peak = self._peaks[self._phase]
        if self.live_bytes > peak.peak:
            peak.peak = self.live_bytes
            peak.snapshot = [(entry[0], entry[1]) for entry in self._live.values()]
            peak.at_op = self._last_op

    # ----------------------------------------------------------------- public API
    def track(self, tensor: torch.Tensor, category: str, *, override: bool = False) -> None:
        """Count a tensor that exists already (param, buffer, state) under ``category``.

        A storage keeps the first category it is given unless ``override`` is set (so a tied
        embedding/lm_head weight counts once, under the category of whichever is registered first).
        """
        if category not in CATEGORIES:
            raise ValueError(f"unknown category {category!r}; expected one of {CATEGORIES}")
        serial = self._add(tensor)
        if serial is None:
            return
        if override or serial not in self._labels:
            self._labels[serial] = category
        self._note_peak()

    def relabel(self, tensor: torch.Tensor, category: str) -> None:
        """Give the storage behind ``tensor`` a category for its whole life (used for ``.grad``)."""
        self.track(tensor, category, override=True)

    def mark_start(self) -> None:
        """Snapshot what is alive now as the step's static baseline (call after the ``track`` calls)."""
        self._start_snapshot = [(entry[0], entry[1]) for entry in self._live.values()]

    def set_phase(self, phase: str) -> None:
        """Enter ``phase`` (one of :data:`PHASES`); the bytes alive now are the phase's first sample."""
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}; expected one of {PHASES}")
        self._close_region()
        self._phase = phase
        self._peaks.setdefault(phase, _PhasePeak())
        self._last_op = f"<enter {phase}>"
        self._in_head = False
        if phase in _FORWARD_PHASES:
            self._region = []
        self._note_peak()

    def enter_head(self) -> None:
        """Mark the rest of the forward as the lm_head/loss part (for ``activations_head``)."""
        if self._phase in _FORWARD_PHASES:
            self._in_head = True

    def end(self) -> None:
        """Leave the last phase (closes any open forward computation)."""
        self._close_region()
        self._phase = None

    @property
    def phase(self) -> str | None:
        """The current phase name, or None outside phases."""
        return self._phase

    def _close_region(self) -> None:
        if self._region is None:
            return
        live_serials = {entry[0] for entry in self._live.values()}
        self._activations.update(s for s in self._region if s in live_serials)
        self._region = None

    def _category(self, serial: int) -> str:
        label = self._labels.get(serial)
        if label is not None:
            return label
        return "activations" if serial in self._activations else "transient"

    def _split(self, snapshot: list[tuple[int, int]]) -> dict[str, int]:
        out = dict.fromkeys(CATEGORIES, 0)
        for serial, nbytes in snapshot:
            out[self._category(serial)] += nbytes
        return out

    def result(self) -> TraceResult:
        """Per-phase peaks with categories (call after :meth:`end`)."""
        self._close_region()
        phases = {
            name: PhaseStats(
                peak=p.peak,
                by_category=self._split(p.snapshot),
                at_op=p.at_op,
                activations_head=sum(
                    n for s, n in p.snapshot if s in self._head and self._category(s) == "activations"
                ),
            )
            for name, p in self._peaks.items()
        }
        start = self._start_snapshot or []
        peak_phase = max(phases, key=lambda n: phases[n].peak) if phases else ""
        return TraceResult(
            peak_allocated=max((p.peak for p in phases.values()), default=0),
            phases=phases,
            start_bytes=sum(n for _, n in start),
            start_by_category=self._split(start),
            end_bytes=self.live_bytes,
            peak_phase=peak_phase,
        )

    # ----------------------------------------------------------------- dispatch
    @staticmethod
    def _see_inside(func: Any, args: tuple[Any, ...]) -> bool:
        if getattr(func, "namespace", "aten") == "aten" or func.name() not in _SEE_INSIDE:
            return False
        first = next((a for a in args if isinstance(a, torch.Tensor)), None)
        return first is not None and first.device.type == "cpu" and not _is_fake(first)

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        if self._phase in _BACKWARD_PHASES:
            # Recomputation (gradient checkpointing) runs with grad mode on; the engine does not.
            if torch.is_grad_enabled():
                if self._region is None:
                    self._region = []
            elif self._region is not None:
                self._close_region()
        if self._see_inside(func, args):
            # Run the op's CPU kernel with this mode active, so the temporaries it allocates
            # (bitsandbytes' dequantized weight inside gemm_4bit) are counted like any op's.
            with self:
                out = func._op_dk(_cpu_kernel_key(func), *args, **(kwargs or {}))
        else:
            out = func(*args, **(kwargs or {}))
        self._last_op = str(func)
        flat, _ = tree_flatten(out)
        added = False
        for item in flat:
            if isinstance(item, torch.Tensor):
                self._add(item)
                added = True
        if added:
            self._note_peak()
        return out


_SEE_INSIDE = frozenset({"bitsandbytes::gemm_4bit"})
"""Custom ops whose kernel's own allocations are traced (a dispatch mode otherwise sees only an op's
outputs). ``gemm_4bit`` dequantizes the whole weight and calls ``linear`` on CPU and, on CUDA, for
more than 1536 rows (training); the 8-bit optimizer ops are *not* opened: CUDA runs them fused."""


def _cpu_kernel_key(func: Any) -> Any:
    """The dispatch key of the kernel a CPU call of ``func`` runs (a CPU kernel, else the default)."""
    key = torch._C.DispatchKey
    if torch._C._dispatch_has_kernel_for_dispatch_key(func.name(), key.CPU):
        return key.CPU
    return key.CompositeExplicitAutograd


def _is_fake(tensor: torch.Tensor) -> bool:
    from torch._subclasses.fake_tensor import FakeTensor

    return isinstance(tensor, FakeTensor)


def grad_labeler(tracer: LiveTensorTracer) -> Callable[[torch.Tensor], None]:
    """A post-accumulate-grad hook that labels ``param.grad``'s storage as ``gradients``."""

    def hook(param: torch.Tensor) -> None:
        if param.grad is not None:
            tracer.relabel(param.grad, "gradients")

    return hook
