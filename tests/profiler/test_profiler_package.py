"""The profiler package stays import-light and its constants agree with the tracer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_importing_profiler_package_loads_no_torch() -> None:
    code = "import sys, profiler; assert 'torch' not in sys.modules, 'torch imported'; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_package_phases_and_categories_match_tracer() -> None:
    import pytest

    pytest.importorskip("torch")
    import profiler
    from profiler import tracer

    assert profiler.PHASES == tracer.PHASES
    assert profiler.CATEGORIES == tracer.CATEGORIES
