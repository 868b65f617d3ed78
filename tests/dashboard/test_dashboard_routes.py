"""GET /dashboard, /dashboard/plotly.min.js and /dashboard/data over HTTP (no browser)."""

from __future__ import annotations

import re

import pytest
from _dashboard_apps import full_app, standalone_app
from fastapi.testclient import TestClient

from service.dashboard.figures import plotly_js_path


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(standalone_app())


def test_page_loads_plotly_from_the_service_not_a_cdn(client: TestClient) -> None:
    r = client.get("/dashboard")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    srcs = re.findall(r'<script[^>]*\ssrc="([^"]+)"', r.text)
    assert srcs == ["/dashboard/plotly.min.js"]
    assert not re.search(r"https?://", r.text)
    assert 'id="status" data-ok="0"' in r.text
    for panel in ("breakdown", "seq", "batch", "matrix", "tco", "calibration"):
        assert f'id="chart-{panel}"' in r.text


def test_plotly_js_is_the_installed_packages_bundle(client: TestClient) -> None:
    r = client.get("/dashboard/plotly.min.js")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/javascript")
    assert r.content == plotly_js_path().read_bytes()


def test_data_returns_every_chart_as_figure_json(client: TestClient) -> None:
    r = client.get("/dashboard/data", params={"seq_len": "4096", "gpu": "a100-sxm-80gb"})
    assert r.status_code == 200
    body = r.json()
    assert {"breakdown", "seq", "batch", "matrix"} <= set(body["figures"])
    assert "tco" not in body["figures"]  # no POST /v1/costs on this app
    for fig in body["figures"].values():
        assert fig["data"] and "layout" in fig
    assert body["summary"]["gpu"] == "a100-sxm-80gb"
    assert body["summary"]["peak_device"] > body["summary"]["peak_allocated"] > 0


def test_bad_controls_give_422_with_every_problem(client: TestClient) -> None:
    r = client.get("/dashboard/data", params={"model": "../../etc/passwd", "batch_size": "0", "lora_r": "x"})
    assert r.status_code == 422
    fields = {p["field"] for p in r.json()["error"]["problems"]}
    assert {"model", "batch_size", "lora.r"} <= fields


def test_tco_chart_appears_when_the_service_has_the_costs_route() -> None:
    app = full_app()
    if app is None:
        pytest.skip("service.api.app is not there")
    c = TestClient(app)
    if "/v1/costs" not in c.get("/openapi.json").json()["paths"]:
        pytest.skip("no POST /v1/costs (estimator.tco not installed)")
    body = c.get("/dashboard/data", params={"gpu": "l40s"}).json()
    assert body["figures"]["tco"]["data"][0]["type"] == "waterfall"
