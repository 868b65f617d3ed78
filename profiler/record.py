"""Calibration records: one JSON file per profiled run, written atomically.

Schema 1::

    {
      "schema": 1,
      "id": "<backend>-<method>-<16 hex of sha256(spec, backend)>",
      "backend": "cpu" | "cpu-fake" | "cuda",
      "spec": {...},              # the normalized spec that actually ran; when the profiler overrode
                                  # the layer count, model.config.num_hidden_layers says what ran
      "environment": {"python", "torch", "transformers", "peft", "bitsandbytes", "accelerate",
                      "platform", "cpu", "cpu_count"},
      "measured": {
        "peak_allocated": int,    # bytes: max over phases of the live-storage sum (tracer.py)
        "peak_phase": str,
        "phases": {phase: {"peak": int, "by_category": {category: int}, "at_op": str}},
        "start": {"bytes": int, "by_category": {...}},   # alive when the step starts (static terms)
        "end_bytes": int,
        "step_time_s": float | null,        # wall time of one untraced step (null when simulated)
        "tokens_per_second": float | null,  # batch_size * seq_len / step_time_s
        "loss": float | null,
        "params": {"total": int, "trainable": int}   # elements (a 4-bit weight counts packed bytes)
      } | null,
      "oom": bool,
      "error": str | null,        # "unsupported: ..." when the backend cannot run the spec
      "notes": [str],
      "prediction": null | {...}  # filled by the estimator side
    }
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

SCHEMA = 1

_PACKAGES = ("torch", "transformers", "peft", "bitsandbytes", "accelerate")


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment() -> dict[str, Any]:
    """Versions and machine facts that change measured memory (no torch import needed)."""
    from importlib import metadata

    env: dict[str, Any] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            env[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            env[name] = None
    env["platform"] = platform.platform()
    env["cpu"] = _cpu_name()
    env["cpu_count"] = os.cpu_count()
    return env


def canonical_json(value: Any) -> str:
    """Sorted-key compact JSON: the text the record id hashes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def record_id(spec: dict[str, Any], backend: str) -> str:
    """Stable id of a (spec, backend) pair: same inputs, same file name."""
    digest = hashlib.sha256(canonical_json({"spec": spec, "backend": backend}).encode()).hexdigest()
    return f"{backend}-{spec.get('method', 'x')}-{digest[:16]}"


def spec_as_run(spec: dict[str, Any], num_layers: int | None) -> dict[str, Any]:
    """The spec with the layer override written into its model config (what the estimator must predict)."""
    out = copy.deepcopy(spec)
    if num_layers is not None and isinstance(out.get("model"), dict) and "config" in out["model"]:
        config = out["model"]["config"]
        config["num_hidden_layers"] = num_layers
        if isinstance(config.get("layer_types"), list):
            config["layer_types"] = config["layer_types"][:num_layers]
    return out


def make_record(measurement: Any, prediction: dict[str, Any] | None = None) -> dict[str, Any]:
    """A schema-1 record from a :class:`profiler.harness.Measurement`."""
    spec = spec_as_run(measurement.spec, measurement.num_layers)
    measured: dict[str, Any] | None = None
    if measurement.trace is not None:
        measured = measurement.trace.to_dict()
        measured["step_time_s"] = measurement.step_time_s
        measured["tokens_per_second"] = measurement.tokens_per_second
        measured["loss"] = measurement.loss
        measured["params"] = dict(measurement.params)
    return {
        "schema": SCHEMA,
        "id": record_id(spec, measurement.backend),
        "backend": measurement.backend,
        "spec": spec,
        "environment": environment(),
        "measured": measured,
        "oom": bool(measurement.oom),
        "error": measurement.error,
        "notes": list(measurement.notes),
        "prediction": prediction,
    }


def write_json_atomic(data: dict[str, Any], path: str | os.PathLike[str], *, indent: int = 2) -> Path:
    """Write JSON to ``path`` through a temp file in the same folder, fsync and ``os.replace``:
    a reader sees the old file or the new one, never a partial one."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=indent, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp_name, 0o644)  # mkstemp creates 0600; records are shared data
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    return target


def write_record(record: dict[str, Any], out_dir: str | os.PathLike[str]) -> Path:
    """Write ``record`` to ``out_dir/<id>.json`` atomically."""
    return write_json_atomic(record, Path(out_dir) / f"{record['id']}.json")


def read_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load one record and check its schema number."""
    with open(path, encoding="utf-8") as fh:
        record: dict[str, Any] = json.load(fh)
    if record.get("schema") != SCHEMA:
        raise ValueError(f"{path}: schema {record.get('schema')!r}, expected {SCHEMA}")
    return record


if __name__ == "__main__":  # pragma: no cover - manual helper: print one record
    print(json.dumps(read_record(sys.argv[1]), indent=2))
