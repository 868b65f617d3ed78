"""The dashboard in a real browser: headless Chromium loads /dashboard from a running uvicorn server.

The page sets ``<div id="status" data-ok="1">`` after every chart rendered with no error; its
``window.onerror`` and ``console.error`` write into that element, so the dumped DOM shows any
console error. A control is changed through the query string (``?seq_len=...&gpu=...``), which the
page honours. A 1366x768 screenshot is kept as an artifact under ``artifacts/`` (git-ignored).
Skipped when ``/usr/bin/chromium`` is missing (``scripts/install_chromium.sh`` installs it).
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from _dashboard_apps import best_app

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="chromium missing: scripts/install_chromium.sh")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
         "--hide-scrollbars", "--virtual-time-budget=10000"]  # fmt: skip


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(best_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def _status(dom: str) -> dict[str, str]:
    m = re.search(r'<div id="status"([^>]*)>(.*?)</div>', dom, re.S)
    assert m, "no #status element in the rendered DOM"
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', m.group(1)))
    attrs["text"] = m.group(2)
    return attrs


def _chart_has_svg(dom: str, pid: str) -> bool:
    start = dom.find(f'id="chart-{pid}"')
    if start < 0:
        return False
    end = dom.find('<section class="panel', start)
    return 'class="main-svg"' in dom[start : end if end > 0 else len(dom)]


def test_dashboard_renders_every_chart_without_errors(base_url: str, tmp_path: Path) -> None:
    url = f"{base_url}/dashboard?seq_len=8192&gpu=a100-sxm-40gb&method=lora"
    r = _chromium(["--dump-dom", url], tmp_path / "profile-dom")
    assert r.returncode == 0, r.stderr[-2000:]
    dom = r.stdout
    status = _status(dom)
    assert status.get("data-ok") == "1", f"page reported: {status}"
    assert "data-error" not in status
    for pid in ("breakdown", "seq", "batch", "matrix"):
        assert _chart_has_svg(dom, pid), f"chart {pid} did not render"
    assert int(status["data-rendered"]) >= 4
    # The query string set the controls, and the charts follow them.
    assert re.search(r'<input id="seq_len"[^>]*>', dom)
    assert "b1×s8192" in dom and "a100-sxm-40gb" in dom
    # The model picker was filled from the catalog (GET /v1/models, or /dashboard/options).
    assert dom.count("<option") > 40


def test_dashboard_screenshot_on_a_laptop_screen(base_url: str, tmp_path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    shot = tmp_path / "dashboard.png"
    url = f"{base_url}/dashboard?seq_len=4096&gpu=rtx-4090"
    r = _chromium([f"--screenshot={shot}", "--window-size=1366,768", url], tmp_path / "profile-shot")
    assert r.returncode == 0, r.stderr[-2000:]
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
    shutil.copyfile(shot, ARTIFACTS / "dashboard-1366x768.png")
