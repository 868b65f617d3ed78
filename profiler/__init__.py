"""tunecast profiler: runs real (or fake-tensor) training steps and measures their memory.

Import-light on purpose: importing ``profiler`` loads no torch. The modules are

``profiler.tracer``    live-tensor tracer (a TorchDispatchMode): peaks per phase, bytes by category
``profiler.harness``   builds a model from a spec dict and runs/traces real CPU training steps
``profiler.simulate``  the same step under FakeTensorMode: real-size shapes traced without memory
``profiler.record``    calibration records (JSON, one file per run, written atomically)
``profiler.sweeps``    named sweeps (smoke, ci, full, real_size) -> records
``python -m profiler``  command line: ``run SPEC.json`` or ``sweep NAME --out DIR``

(``profiler.probes`` / ``profiler.nvml``, the CUDA allocator and NVML probes, are separate modules.)
"""

from __future__ import annotations

__all__ = ["CATEGORIES", "PHASES"]

PHASES: tuple[str, ...] = ("forward", "loss_backward", "layer_backward", "optimizer_step")
CATEGORIES: tuple[str, ...] = (
    "weights",
    "trainable_params",
    "gradients",
    "optimizer_states",
    "activations",
    "transient",
)
