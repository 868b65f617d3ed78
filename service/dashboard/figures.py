"""Pure figure builders: estimator outputs in, plotly figures out.

Every builder only arranges numbers the estimator produced (``Estimate`` objects, sweeps of them,
a TCO bill, calibration pairs); the one conversion done here is bytes -> GiB for the axes, with the
exact integer bytes kept in each trace's ``customdata`` so nothing is lost and tests can compare
bytes exactly. No I/O, no estimator calls: see ``service.dashboard.data`` for those.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

from estimator.estimate import Estimate
from estimator.plan import PlanRow

GIB = float(1 << 30)

# The estimator's memory categories, bottom of the stack first (static terms, then per-step ones).
CATEGORIES: tuple[str, ...] = (
    "weights",
    "quant_constants",
    "trainable_params",
    "gradients",
    "optimizer_states",
    "activations",
    "transient",
)
CATEGORY_COLORS: dict[str, str] = {
    "weights": "#4C78A8",
    "quant_constants": "#9ECAE9",
    "trainable_params": "#F58518",
    "gradients": "#E45756",
    "optimizer_states": "#72B7B2",
    "activations": "#54A24B",
    "transient": "#B279A2",
}
METHOD_COLORS: dict[str, str] = {"full": "#E45756", "lora": "#4C78A8", "qlora": "#54A24B"}
LIMIT_COLOR = "#D62728"
FONT = {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 11}


def gib(n: float) -> float:
    """Bytes -> GiB for display (the only unit conversion in this module)."""
    return n / GIB


def _layout(fig: go.Figure, title: str, **extra: Any) -> go.Figure:
    base: dict[str, Any] = {
        "title": {
            "text": title,
            "x": 0.01,
            "xanchor": "left",
            "y": 0.985,
            "yanchor": "top",
            "yref": "container",
            "font": {"size": 13},
        },
        "template": "plotly_white",
        "font": FONT,
        "margin": {"l": 55, "r": 15, "t": 40, "b": 45},
        "legend": {"font": {"size": 10}},
    }
    fig.update_layout(**(base | extra))
    return fig


def _limit_line(fig: go.Figure, usable_bytes: int, gpu_id: str) -> None:
    """The GPU's usable memory as a horizontal line across the whole plot."""
    fig.add_shape(
        type="line", xref="paper", x0=0, x1=1, yref="y", y0=gib(usable_bytes), y1=gib(usable_bytes),
        line={"color": LIMIT_COLOR, "width": 2, "dash": "dash"}, name="usable",
    )  # fmt: skip
    fig.add_annotation(
        xref="paper", x=1, xanchor="right", yref="y", y=gib(usable_bytes), yanchor="bottom",
        text=f"{gpu_id} usable {gib(usable_bytes):,.1f} GiB", showarrow=False,
        font={"color": LIMIT_COLOR, "size": 10},
    )  # fmt: skip


def memory_breakdown_figure(est: Estimate) -> go.Figure:
    """(a) One stacked bar per phase, by memory category, against the GPU's usable memory.

    The stack of each phase totals that phase's live bytes (``memory.phases[p].total``); the peak
    phase's stack totals ``memory.peak_allocated``. ``peak_reserved`` and ``peak_device`` are marked on
    the peak phase's bar, the usable memory is a dashed line.
    """
    mem = est.memory
    peak = mem.peak_phase.value
    phases = list(mem.phases)
    labels = [f"{p} (peak)" if p == peak else p for p in phases]
    fig = go.Figure()
    for cat in CATEGORIES:
        values = [getattr(mem.phases[p], cat) for p in phases]
        if not any(values):
            continue
        fig.add_trace(
            go.Bar(
                name=cat, x=labels, y=[gib(v) for v in values], customdata=values,
                marker={"color": CATEGORY_COLORS[cat]},
                hovertemplate=f"{cat}: %{{y:,.2f}} GiB (%{{customdata:,}} B)<extra>%{{x}}</extra>",
            )
        )  # fmt: skip
    peak_label = labels[phases.index(peak)]
    marks = (("peak_reserved", mem.peak_reserved, "#333333"), ("peak_device", mem.peak_device, "#000000"))
    for name, value, color in marks:
        fig.add_trace(
            go.Scatter(
                name=name, x=[peak_label], y=[gib(value)], customdata=[value], mode="markers",
                marker={"symbol": "line-ew-open", "size": 40, "line": {"width": 2, "color": color}},
                hovertemplate=f"{name}: %{{y:,.2f}} GiB (%{{customdata:,}} B)<extra></extra>",
            )
        )  # fmt: skip
    fig.add_annotation(
        x=peak_label, y=gib(mem.peak_device), yanchor="bottom", text="▲ peak", showarrow=False,
        font={"size": 11, "color": "#000"},
    )  # fmt: skip
    if est.gpu is not None:
        _limit_line(fig, est.gpu.usable_bytes, est.gpu.id)
    verdict = ""
    if est.fits is not None and est.headroom_bytes is not None:
        word = " · fits" if est.fits else " · DOES NOT FIT"
        verdict = f"{word}, headroom {gib(est.headroom_bytes):,.1f} GiB"
    spec = est.spec
    return _layout(
        fig,
        f"Memory by phase · {spec['method']} · b{spec['batch_size']}×s{spec['seq_len']}{verdict}",
        barmode="stack",
        yaxis={"title": {"text": "GiB"}, "rangemode": "tozero"},
        meta={"peak_phase": peak, "peak_allocated": mem.peak_allocated,
              "usable_bytes": est.gpu.usable_bytes if est.gpu else None},
    )  # fmt: skip


@dataclass(frozen=True)
class Sweep:
    """Estimates of one method along one axis (``seq_len`` or ``batch_size``), the other held fixed.

    ``largest`` is the estimator's ``largest_fit`` along that axis (None without a GPU).
    """

    method: str
    axis: str
    values: tuple[int, ...]
    estimates: tuple[Estimate, ...]
    largest: int | None


def sweep_figure(sweeps: Sequence[Sweep], axis: str, usable_bytes: int | None, gpu_id: str | None,
                 current: int | None = None) -> go.Figure:  # fmt: skip
    """(b) Peak device memory vs ``axis`` per method, with the GPU's limit as a horizontal line.

    A point is drawn as a cross where the estimator says it does not fit (``fits`` is False); the
    legend names the largest value that fits according to the estimator's ``largest_fit``.
    """
    fig = go.Figure()
    for sw in sweeps:
        if sw.axis != axis:
            continue
        ys = [e.memory.peak_device for e in sw.estimates]
        fits = [e.fits for e in sw.estimates]
        symbols = ["x" if f is False else "circle" for f in fits]
        verdicts = ["OOM" if f is False else ("fits" if f else "-") for f in fits]
        name = sw.method if sw.largest is None else f"{sw.method} (fits ≤ {sw.largest:,})"
        fig.add_trace(
            go.Scatter(
                name=name, x=list(sw.values), y=[gib(v) for v in ys], mode="lines+markers",
                customdata=[[v, verdict] for v, verdict in zip(ys, verdicts, strict=True)],
                marker={"symbol": symbols, "size": 8, "color": METHOD_COLORS.get(sw.method)},
                line={"color": METHOD_COLORS.get(sw.method)},
                meta={"method": sw.method, "largest": sw.largest},
                hovertemplate=f"{sw.method} {axis}=%{{x:,}}: %{{y:,.2f}} GiB · %{{customdata[1]}}"
                "<extra></extra>",
            )
        )  # fmt: skip
    xs = [v for sw in sweeps if sw.axis == axis for v in sw.values]
    if usable_bytes is not None and gpu_id is not None and xs:
        # A trace, not a shape: shapes and annotations on a log axis take log10 coordinates.
        fig.add_trace(
            go.Scatter(
                name=f"{gpu_id} usable {gib(usable_bytes):,.1f} GiB", x=[min(xs), max(xs)],
                y=[gib(usable_bytes)] * 2, customdata=[usable_bytes] * 2, mode="lines",
                line={"color": LIMIT_COLOR, "width": 2, "dash": "dash"}, meta={"limit": True},
                hovertemplate="usable %{y:,.1f} GiB (%{customdata:,} B): above it, OOM<extra></extra>",
            )
        )  # fmt: skip
    if current is not None:
        fig.add_vline(x=current, line={"color": "#888", "width": 1, "dash": "dot"})
    label = "sequence length (tokens)" if axis == "seq_len" else "micro-batch size"
    ys_all = [y for tr in fig.data for y in (tr.y or ()) if y]
    decades = bool(ys_all) and max(ys_all) / min(ys_all) > 20  # power-of-ten ticks only: less clutter
    return _layout(
        fig,
        f"Peak device memory vs {label.split(' (')[0]} (× = out of memory)",
        xaxis={"title": {"text": label}, "type": "log", "dtick": 0.30102999566398},  # log10(2): 2^k ticks
        yaxis={"title": {"text": "GiB (log scale)"}, "type": "log", **({"dtick": 1} if decades else {})},
        legend={"orientation": "h", "x": 0, "y": 1.01, "yanchor": "bottom", "font": {"size": 10}},
        margin={"l": 55, "r": 15, "t": 78, "b": 45},
        meta={"axis": axis, "usable_bytes": usable_bytes},
    )


@dataclass(frozen=True)
class MatrixCell:
    """One (GPU, method) row of the estimator's plan (``estimator.plan.PlanRow``)."""

    method: str
    row: PlanRow


def fit_matrix_figure(cells: Sequence[MatrixCell], tokens_per_run: int) -> go.Figure:
    """(c) GPU × method heatmap coloured by headroom (GiB, red below zero); time and cost per run
    (from ``estimator.plan``) in the hover."""
    gpus = list(dict.fromkeys(c.row.gpu for c in cells))
    methods = list(dict.fromkeys(c.method for c in cells))
    by = {(c.method, c.row.gpu): c.row for c in cells}
    z: list[list[float | None]] = []
    text: list[list[str]] = []
    custom: list[list[list[Any]]] = []
    for m in methods:
        zr: list[float | None] = []
        tr: list[str] = []
        cr: list[list[Any]] = []
        for g in gpus:
            r = by.get((m, g))
            if r is None:
                zr.append(None)
                tr.append("")
                cr.append(["", "", "", "", "", 0])
                continue
            zr.append(gib(r.headroom_bytes))
            tr.append("✓" if r.fits else "✗")
            hours = "-" if r.time_per_run_s is None else f"{r.time_per_run_s / 3600:,.1f} h"
            cost = "-" if r.cost_per_run_usd is None else f"${r.cost_per_run_usd:,.0f}"
            cr.append(["fits" if r.fits else "OOM", f"{gib(r.peak_device):,.1f}", hours, cost,
                       f"{r.tokens_per_second:,.0f}", r.headroom_bytes])  # fmt: skip
        z.append(zr)
        text.append(tr)
        custom.append(cr)
    finite = [abs(v) for row in z for v in row if v is not None]
    span = max(finite) if finite else 1.0
    fig = go.Figure(
        go.Heatmap(
            x=gpus, y=methods, z=z, text=text, texttemplate="%{text}", customdata=custom,
            zmid=0, zmin=-span, zmax=span, xgap=1, ygap=1,
            colorscale=[[0.0, "#B2182B"], [0.45, "#F4A582"], [0.5, "#F7F7F7"], [0.55, "#A6DBA0"],
                        [1.0, "#1B7837"]],
            colorbar={"title": {"text": "headroom GiB", "side": "right"}, "thickness": 12},
            hovertemplate=(
                "<b>%{x}</b> · %{y}: %{customdata[0]}<br>peak %{customdata[1]} GiB · headroom %{z:,.1f} GiB"
                "<br>%{customdata[4]} tokens/s per GPU<br>per run: %{customdata[2]} · %{customdata[3]}"
                "<extra></extra>"
            ),
        )
    )  # fmt: skip
    return _layout(
        fig,
        f"Fit matrix: headroom per GPU × method (run = {tokens_per_run:,} tokens; hover for time and cost)",
        xaxis={"tickangle": -40, "tickfont": {"size": 10}},
        yaxis={"autorange": "reversed"},
        margin={"l": 55, "r": 15, "t": 40, "b": 95},
        meta={"tokens_per_run": tokens_per_run},
    )


def tco_figure(bill: Mapping[str, Any]) -> go.Figure:
    """(d) The TCO bill (``estimator.tco.Bill`` as JSON) as a waterfall: the one-time lines up to the
    one-time subtotal, then the recurring lines over the horizon up to the bill's total.

    Lines of zero amount are left out; the subtotal and total bars are the bill's own figures.
    """
    lines = [ln for ln in bill.get("lines", []) if isinstance(ln, Mapping) and float(ln.get("amount", 0))]
    names: list[str] = []
    amounts: list[float] = []
    measures: list[str] = []
    kinds: list[str] = []
    horizon = bill.get("horizon_months")
    groups = (
        (False, "one-time", "one-time total", bill.get("one_time_total")),
        (True, "recurring", f"total over {horizon} months", bill.get("total")),
    )
    for recurring, kind, subtotal_name, subtotal in groups:
        for ln in lines:
            if bool(ln.get("recurring")) is recurring:
                names.append(str(ln.get("name", "?")))
                amounts.append(float(ln["amount"]))
                measures.append("relative")
                kinds.append(f"{kind} · {ln.get('category', '')}")
        names.append(subtotal_name)
        amounts.append(float(subtotal or 0))
        measures.append("total")
        kinds.append("subtotal")
    fig = go.Figure(
        go.Waterfall(
            x=names, y=amounts, measure=measures, customdata=kinds, connector={"visible": False},
            increasing={"marker": {"color": "#4C78A8"}}, totals={"marker": {"color": "#333333"}},
            hovertemplate="%{x} (%{customdata}): $%{y:,.0f}<extra></extra>",
        )
    )  # fmt: skip
    compute = bill.get("compute") or {}
    return _layout(
        fig,
        f"TCO over {horizon} months: ${float(bill.get('total', 0)):,.0f} "
        f"(run = {int(compute.get('tokens_per_run', 0)):,} tokens on {compute.get('gpu', '?')})",
        yaxis={"title": {"text": "USD"}},
        xaxis={"tickangle": -35, "tickfont": {"size": 9}},
        showlegend=False,
        margin={"l": 60, "r": 15, "t": 40, "b": 110},
        meta={"total": bill.get("total"), "one_time_total": bill.get("one_time_total")},
    )


@dataclass(frozen=True)
class CalibrationPoint:
    """One calibration record: the GPU (or backend) it ran on, the estimator's and the measured peak."""

    gpu: str
    label: str
    predicted_bytes: int
    measured_bytes: int


def calibration_figure(points: Sequence[CalibrationPoint]) -> go.Figure:
    """(e) Predicted vs measured peak allocated memory per GPU, with the y = x line."""
    fig = go.Figure()
    for gpu in dict.fromkeys(p.gpu for p in points):
        mine = [p for p in points if p.gpu == gpu]
        fig.add_trace(
            go.Scatter(
                name=gpu, mode="markers", x=[gib(p.measured_bytes) for p in mine],
                y=[gib(p.predicted_bytes) for p in mine], text=[p.label for p in mine],
                customdata=[[p.measured_bytes, p.predicted_bytes] for p in mine],
                hovertemplate="%{text}<br>measured %{x:,.3f} GiB · predicted %{y:,.3f} GiB"
                "<extra>%{fullData.name}</extra>",
            )
        )  # fmt: skip
    top = max([gib(max(p.measured_bytes, p.predicted_bytes)) for p in points] or [1.0])
    fig.add_trace(go.Scatter(name="predicted = measured", x=[0, top], y=[0, top], mode="lines",
                             line={"color": "#999", "dash": "dot"}, hoverinfo="skip"))  # fmt: skip
    return _layout(
        fig,
        f"Calibration: predicted vs measured peak ({len(points)} records)",
        xaxis={"title": {"text": "measured GiB"}},
        yaxis={"title": {"text": "predicted GiB"}},
    )


@cache
def plotly_js_path() -> Path:
    """plotly.min.js as bundled in the installed plotly package (served and inlined: no CDN)."""
    import plotly

    path = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
    if not path.is_file():  # pragma: no cover - a broken plotly install
        raise RuntimeError(f"plotly.min.js not found at {path}")
    return path


def figure_json(fig: go.Figure) -> dict[str, Any]:
    """A figure as plain JSON data (``data`` and ``layout``) for ``Plotly.react``."""
    out: dict[str, Any] = json.loads(pio.to_json(fig, validate=False))
    return out
