"""`estimate calibrate run|fit|report` through the typer app."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from estimator import calibration
from profiler.probes import cuda_available
from service.cli import app
from tests.calibration._synth import GPU_ID, cpu_record, spec

runner = CliRunner()


def test_dry_run_prints_a_plan_inside_the_budget_without_a_gpu() -> None:
    result = runner.invoke(
        app,
        [
            "calibrate",
            "run",
            "--backend",
            "cuda",
            "--sweep",
            "quick",
            "--gpu-minutes",
            "6",
            "--dry-run",
            "--gpu",
            "h200",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["gpu_id"] == "h200-sxm-141gb"
    assert 0 < plan["predicted_s"] <= 360
    assert plan["runs"][0]["name"].startswith("Llama-3.2-1B-qlora")


@pytest.mark.skipif(cuda_available(), reason="checks the no-GPU answer")
def test_cuda_sweep_without_a_gpu_is_a_clear_error() -> None:
    result = runner.invoke(app, ["calibrate", "run", "--backend", "cuda", "--sweep", "quick"])
    assert result.exit_code == 2
    assert "no CUDA GPU" in result.output


def test_sweep_names_are_checked_per_backend() -> None:
    bad_cpu = runner.invoke(app, ["calibrate", "run", "--backend", "cpu", "--sweep", "quick"])
    assert bad_cpu.exit_code == 2
    bad_cuda = runner.invoke(app, ["calibrate", "run", "--backend", "cuda", "--sweep", "smoke", "--dry-run"])
    assert bad_cuda.exit_code == 2


def test_cpu_backend_calls_the_cpu_sweep_and_fills_predictions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from profiler import sweeps
    from profiler.record import write_record

    calls: list[tuple[str, Path]] = []

    def fake_run_sweep(name: str, out_dir: Any, *, progress: Any = None) -> list[dict[str, Any]]:
        calls.append((name, Path(out_dir)))
        record = cpu_record(spec("lora", seq_len=128), alloc_error=0.0)
        write_record(record, out_dir)
        return [record]

    monkeypatch.setattr(sweeps, "run_sweep", fake_run_sweep)
    result = runner.invoke(
        app, ["calibrate", "run", "--backend", "cpu", "--sweep", "smoke", "--out", str(tmp_path), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert calls == [("smoke", tmp_path / "cpu")]
    (path,) = (tmp_path / "cpu").glob("*.json")
    on_disk = json.loads(path.read_text())
    assert on_disk["prediction"]["spec"]["device"] == "cpu"
    assert on_disk["prediction"]["memory"]["cuda_context"] == 0


def test_fit_and_report_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from profiler.fit import peak_rate
    from profiler.record import write_record
    from tests.calibration._synth import GPU, MIB, cuda_record

    root = tmp_path / "records"
    rate = peak_rate(GPU_ID)
    assert rate
    write_record(cuda_record(spec("lora"), context=600 * MIB, slack=0.1, mfu=0.3, peak_flops=rate), root / GPU["slug"])
    write_record(cpu_record(spec("lora", seq_len=128), alloc_error=0.02), root / "cpu")
    fitted = tmp_path / "fitted.json"
    monkeypatch.setenv("TUNECAST_CALIBRATION", str(fitted))
    try:
        fit = runner.invoke(app, ["calibrate", "fit", "--records", str(root), "--out", str(fitted)])
        assert fit.exit_code == 0, fit.output
        assert GPU_ID in fit.output
        data = json.loads(fitted.read_text())
        assert data["gpus"][GPU_ID]["cuda_context_bytes"] == 600 * MIB
        rep = runner.invoke(app, ["calibrate", "report", "--records", str(root), "--json"])
        assert rep.exit_code == 0, rep.output
        body = json.loads(rep.stdout)
        assert set(body["gpus"]) == {GPU_ID, "cpu"}
        for key in (
            "n",
            "median_abs_error_allocated",
            "median_abs_error_device",
            "median_abs_error_step_time",
        ):
            assert key in body["gpus"][GPU_ID]
        table = runner.invoke(app, ["calibrate", "report", "--records", str(root)])
        assert table.exit_code == 0 and "per phase" in table.output
    finally:
        monkeypatch.delenv("TUNECAST_CALIBRATION")
        calibration.reload()


def test_cli_module_imports_no_torch() -> None:
    import subprocess
    import sys

    code = "import sys, service.cli_calibrate; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_fit_without_records_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "fitted.json"
    result = runner.invoke(app, ["calibrate", "fit", "--records", str(tmp_path / "none"), "--out", str(out)])
    assert result.exit_code == 2
    assert not out.exists()
