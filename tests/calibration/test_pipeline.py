"""records -> fit -> the estimator uses the fitted coefficients; report shows residuals."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from estimator import calibration
from profiler.fit import fit_and_write, load_records, peak_rate, report
from profiler.record import write_record
from tests.calibration._synth import GPU, GPU_ID, MIB, cpu_record, cuda_record, spec

CONTEXT = 700 * MIB
SLACK = 0.08
MFU = {"lora": 0.31, "qlora": 0.19, "full": 0.42}


@pytest.fixture
def fitted_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "fitted.json"
    monkeypatch.setenv("TUNECAST_CALIBRATION", str(path))
    calibration.reload()
    yield path
    monkeypatch.delenv("TUNECAST_CALIBRATION")
    calibration.reload()


def _write_records(root: Path) -> None:
    rate = peak_rate(GPU_ID)
    assert rate
    for i, (method, seq, gc) in enumerate(
        [
            ("lora", 512, True),
            ("lora", 2048, False),
            ("qlora", 1024, True),
            ("full", 1024, True),
            ("full", 256, False),
        ]
    ):
        s = spec(method, seq_len=seq, gc=gc)
        error = (-0.03, 0.02, 0.05, -0.01, 0.0)[i]
        write_record(
            cuda_record(s, context=CONTEXT, slack=SLACK, mfu=MFU[method], alloc_error=error, peak_flops=rate),
            root / GPU["slug"],
        )
    write_record(cpu_record(spec("lora", seq_len=256), alloc_error=0.1), root / "cpu")
    write_record(cpu_record(spec("full", seq_len=128), alloc_error=0.1), root / "cpu")


def test_fit_recovers_known_offsets_and_the_estimator_uses_them(tmp_path: Path, fitted_env: Path) -> None:
    from estimator.estimate import estimate
    from estimator.spec import check_spec

    root = tmp_path / "records"
    _write_records(root)
    before = estimate(check_spec(spec("lora")))
    assert before.calibration.source == "default"

    data, path, _loaded = fit_and_write(root)
    assert path == fitted_env and path.is_file()
    entry = data["gpus"][GPU_ID]
    assert abs(entry["cuda_context_bytes"] - CONTEXT) <= 1
    assert entry["allocator_slack"] == pytest.approx(SLACK, abs=1e-6)
    for method, mfu in MFU.items():
        assert entry["mfu"][method] == pytest.approx(mfu, rel=1e-6)
    assert entry["records"] == 5
    assert data["records"] == 7
    assert len(data["records_hash"]) == 64
    assert set(data["gpus"]) == {GPU_ID}  # CPU records never make CUDA coefficients

    after = estimate(check_spec(spec("lora")))  # fit_and_write called calibration.reload()
    assert after.calibration.source == "fitted"
    assert after.calibration.records == 5
    assert after.memory.cuda_context == entry["cuda_context_bytes"]
    assert after.memory.allocator_slack == pytest.approx(SLACK, abs=1e-6)
    assert after.throughput.calibrated and after.throughput.mfu == pytest.approx(MFU["lora"], rel=1e-6)


def test_disagreement_of_activation_terms_is_reported_not_absorbed(tmp_path: Path, fitted_env: Path) -> None:
    root = tmp_path / "records"
    _write_records(root)
    data, _, _ = fit_and_write(root)
    gpu_res = data["residuals"][GPU_ID]
    alloc = gpu_res["peak_allocated"]
    assert alloc["n"] == 5
    assert alloc["median_abs_error"] == pytest.approx(0.02, abs=0.003)  # |-3, 2, 5, -1, 0| %: median 2 %
    assert alloc["p90"] >= alloc["median_abs_error"]
    assert gpu_res["peak_device"]["n"] == 5
    assert gpu_res["step_time_s"]["median_abs_error"] == pytest.approx(0.0, abs=1e-6)
    cpu = data["residuals"]["cpu"]  # CPU records contribute to activation residuals
    assert cpu["peak_allocated"]["n"] == 2
    # measured = predicted x 1.1, so (predicted - measured) / measured = -1/11
    assert cpu["peak_allocated"]["median_error"] == pytest.approx(-1 / 11, abs=0.005)
    assert "loss_backward.activations" in cpu


def test_records_hash_changes_when_a_record_changes(tmp_path: Path, fitted_env: Path) -> None:
    root = tmp_path / "records"
    _write_records(root)
    first, _, _ = fit_and_write(root)
    again, _, _ = fit_and_write(root)
    assert first["records_hash"] == again["records_hash"]
    victim = sorted((root / "cpu").glob("*.json"))[0]
    record = json.loads(victim.read_text())
    record["measured"]["step_time_s"] = 2.0
    victim.write_text(json.dumps(record))
    changed, _, _ = fit_and_write(root)
    assert changed["records_hash"] != first["records_hash"]


def test_report_groups_cpu_records_under_cpu_with_a_phase_table(tmp_path: Path, fitted_env: Path) -> None:
    root = tmp_path / "records"
    _write_records(root)
    fit_and_write(root)
    data = report(load_records(root))
    g = data["gpus"][GPU_ID]
    assert g["n"] == 5 and g["calibration"] == "fitted"
    assert g["median_abs_error_allocated"] == pytest.approx(0.02, abs=0.003)
    assert g["median_abs_error_device"] is not None and g["median_abs_error_device"] < 0.05
    assert g["median_abs_error_step_time"] == pytest.approx(0.0, abs=1e-6)
    assert data["gpus"]["cpu"]["n"] == 2
    assert data["gpus"]["cpu"]["median_abs_error_device"] is None
    cpu_phases = data["phases"]["cpu"]
    assert set(cpu_phases) == {"forward", "loss_backward", "layer_backward", "optimizer_step"}
    assert cpu_phases["forward"]["categories"]["activations"]["n"] == 2


def test_unreadable_record_files_are_listed_and_skipped(tmp_path: Path, fitted_env: Path) -> None:
    root = tmp_path / "records"
    _write_records(root)
    (root / "cpu" / "broken.json").write_text("{not json")
    data, _, loaded = fit_and_write(root)
    assert len(loaded.problems) == 1 and data["records"] == 7
