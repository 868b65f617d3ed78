"""The estimator stays light: importing it and estimating loads no heavy library."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "transformers", "peft", "bitsandbytes", "fastapi", "plotly", "pynvml", "accelerate")


def test_import_estimator_and_estimate_load_no_heavy_package() -> None:
    code = (
        "import sys\n"
        "from estimator import estimate, TrainingSpec\n"
        "estimate(TrainingSpec.model_validate({'model': 'meta-llama/Llama-3.1-8B', 'gpu': 'h100'}))\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_cli_memory_json_path_loads_no_heavy_package() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from service.cli import app\n"
        "r = CliRunner().invoke(app, ['memory', '--model', 'Qwen/Qwen3-8B', '--json'])\n"
        "assert r.exit_code == 0, r.output\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
