"""``estimate report``: one self-contained HTML file, or exit 2 with every problem listed."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from service.cli import app
from service.dashboard.figures import plotly_js_path

runner = CliRunner()


def test_report_writes_one_self_contained_html_file(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    r = runner.invoke(app, ["report", "--model", "meta-llama/Llama-3.1-8B", "--method", "qlora",
                            "--gpu", "rtx-4090", "--seq-len", "4096", "--out", str(out)])  # fmt: skip
    assert r.exit_code == 0, r.output
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!doctype html>") and text.rstrip().endswith("</html>")
    assert plotly_js_path().read_text(encoding="utf-8")[:2000] in text  # plotly.js inlined
    assert not re.search(r"<script[^>]*\ssrc=", text)  # nothing loaded from elsewhere
    assert not re.search(r"<link[^>]*href=\"https?://", text)
    for pid in ("breakdown", "seq", "batch", "matrix"):
        assert f'id="fig-{pid}"' in text and f'Plotly.newPlot("fig-{pid}"' in text
    assert "fits" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]  # no temporary file left


def test_report_replaces_an_existing_file(tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    out.write_text("old")
    r = runner.invoke(app, ["report", "--model", "Qwen/Qwen2.5-0.5B", "--method", "full", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert out.read_text(encoding="utf-8").startswith("<!doctype html>")


def test_report_bad_input_exits_2_listing_every_problem(tmp_path: Path) -> None:
    out = tmp_path / "missing" / "r.html"
    r = runner.invoke(app, ["report", "--model", "no/such-model", "--method", "lora", "--gpu", "gtx-9999",
                            "--batch-size", "0", "--out", str(out)])  # fmt: skip
    assert r.exit_code == 2
    for field in ("model", "gpu", "batch_size", "--out"):
        assert f"{field}:" in r.output
    assert "Traceback" not in r.output
    assert not out.parent.exists()


def test_report_without_model_or_out_exits_2(tmp_path: Path) -> None:
    r = runner.invoke(app, ["report"])
    assert r.exit_code == 2
    assert "model:" in r.output and "--out:" in r.output
