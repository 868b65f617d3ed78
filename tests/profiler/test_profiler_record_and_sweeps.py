"""Calibration records and named sweeps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _profiler_tiny import LLAMA, spec

from profiler.record import SCHEMA, canonical_json, read_record, record_id, spec_as_run, write_record
from profiler.sweeps import SWEEPS, ci_entries, smoke_entries


def _record(spec_dict: dict[str, object]) -> dict[str, object]:
    return {"schema": SCHEMA, "id": record_id(spec_dict, "cpu"), "backend": "cpu", "spec": spec_dict}


def test_record_id_is_stable_and_depends_on_spec_and_backend() -> None:
    a = spec(method="lora")
    assert record_id(a, "cpu") == record_id(json.loads(canonical_json(a)), "cpu")
    assert record_id(a, "cpu") != record_id(a, "cpu-fake")
    assert record_id(a, "cpu") != record_id(spec(method="full"), "cpu")
    assert record_id(a, "cpu").startswith("cpu-lora-")


def test_record_is_written_atomically_under_its_id(tmp_path: Path) -> None:
    rec = _record(spec())
    path = write_record(rec, tmp_path / "records")
    assert path.name == f"{rec['id']}.json"
    write_record(rec, tmp_path / "records")  # rewriting replaces, never duplicates
    assert [p.name for p in (tmp_path / "records").iterdir()] == [path.name]
    assert read_record(path) == rec


def test_record_with_unknown_schema_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"schema": 99}))
    with pytest.raises(ValueError, match="schema"):
        read_record(path)


def test_layer_override_is_written_into_the_recorded_spec() -> None:
    s = spec()
    out = spec_as_run(s, 1)
    assert out["model"]["config"]["num_hidden_layers"] == 1
    assert s["model"]["config"]["num_hidden_layers"] == LLAMA["num_hidden_layers"]


def test_ci_sweep_covers_every_axis_the_estimator_calibrates() -> None:
    entries = ci_entries()
    assert len(entries) >= 24
    specs = [e.spec for e in entries]
    assert {s["method"] for s in specs} == {"full", "lora", "qlora"}
    assert {s["gradient_checkpointing"] for s in specs} == {True, False}
    assert {s.get("attention", "sdpa") for s in specs} >= {"sdpa", "eager"}
    assert {s.get("loss", "standard") for s in specs} >= {"standard", "chunked"}
    assert {s.get("optimizer", "adamw") for s in specs} >= {"adamw", "adamw_8bit"}
    assert {s["model"]["config"]["model_type"] for s in specs} == {"llama", "qwen3"}
    assert {(s["batch_size"], s["seq_len"]) for s in specs} >= {(1, 256), (4, 64)}
    assert len({e.name for e in entries}) == len(entries)
    assert set(SWEEPS) >= {"smoke", "ci", "full"}


def test_smoke_sweep_writes_one_complete_record_per_entry(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("peft")
    pytest.importorskip("bitsandbytes")
    from profiler.sweeps import run_sweep

    records = run_sweep("smoke", tmp_path)
    assert len(records) == len(smoke_entries())
    files = sorted(p.name for p in tmp_path.glob("*.json"))
    assert files == sorted(f"{r['id']}.json" for r in records)
    for rec in records:
        assert rec["error"] is None and rec["oom"] is False
        assert rec["prediction"] is None
        assert set(rec["environment"]) >= {
            "python",
            "torch",
            "transformers",
            "peft",
            "bitsandbytes",
            "accelerate",
            "platform",
            "cpu",
        }
        measured = rec["measured"]
        assert measured["peak_allocated"] == max(p["peak"] for p in measured["phases"].values())
        assert measured["step_time_s"] > 0 and measured["tokens_per_second"] > 0


def test_cli_run_profiles_a_spec_file_and_writes_its_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("peft")
    from profiler.__main__ import main

    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec(method="lora")))
    assert main(["run", str(spec_file), "--backend", "cpu-fake", "--layers", "1", "--out", str(tmp_path / "out")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["backend"] == "cpu-fake"
    assert printed["spec"]["model"]["config"]["num_hidden_layers"] == 1
    assert read_record(tmp_path / "out" / f"{printed['id']}.json") == printed
