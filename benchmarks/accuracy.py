"""Accuracy against published, measured fine-tuning runs (torchtune and lit-gpt tables).

Maps each record of ``published_visible_specs.jsonl`` (copied from
``../shared/reference/measurements``; each record keeps its source there) to a spec, predicts, and
prints per measured metric (allocated -> peak_allocated, reserved -> peak_reserved, device ->
peak_device; "active" is scored against peak_allocated) the median and p90 |error| and the share
within +-10 %, for all records and for the fully specified ones (no ``*_assumed`` /
``seq_len_upper_bound`` / ``unmodelled:*`` tag). OOM records are scored as fit / no-fit.
No per-record or per-source factor is fitted: only physical terms.

    python benchmarks/accuracy.py [--verbose] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from estimator import TrainingSpec, estimate

HERE = Path(__file__).resolve().parent
METRIC = {
    "allocated": "peak_allocated",
    "active": "peak_allocated",
    "reserved": "peak_reserved",
    "device": "peak_device",
}


def completeness() -> dict[str, str]:
    """The source's own judgement of how fully each run is specified (published_visible.json)."""
    return {r["id"]: r.get("completeness", "") for r in json.loads((HERE / "published_visible.json").read_text())}


def fully_specified(tags: list[str]) -> bool:
    return not any(t.endswith("_assumed") or t == "seq_len_upper_bound" or t.startswith("unmodelled:") for t in tags)


def run(path: Path) -> list[dict[str, object]]:
    rows = []
    comp = completeness()
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        spec = TrainingSpec.model_validate(rec["spec"])
        est = estimate(spec)
        row: dict[str, object] = {
            "id": rec["id"],
            "tags": rec["tags"],
            "full": fully_specified(rec["tags"]),
            "complete": comp.get(rec["id"]) == "full",
        }
        if rec.get("measured"):
            metric = rec["measured"]["metric"]
            pred = getattr(est.memory, METRIC[metric])
            meas = rec["measured"]["bytes"]
            row.update(
                metric=metric,
                measured=meas,
                predicted=pred,
                error=(pred - meas) / meas,
                phase=est.memory.peak_phase.value,
            )
        if rec.get("oom"):
            row.update(oom=True, predicted_fits=est.fits)
        rows.append(row)
    return rows


def summarize(rows: list[dict[str, object]], key: str | None) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    scored = [r for r in rows if "error" in r and (key is None or r[key])]
    for metric in sorted({str(r["metric"]) for r in scored} | {"all"}):
        errs = sorted(abs(float(r["error"])) for r in scored if metric == "all" or r["metric"] == metric)  # type: ignore[arg-type]
        if not errs:
            continue
        out[metric] = {
            "n": len(errs),
            "median_abs_error": statistics.median(errs),
            "p90_abs_error": errs[min(len(errs) - 1, int(0.9 * len(errs)))],
            "within_10pct": sum(e <= 0.10 for e in errs) / len(errs),
        }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--records", type=Path, default=HERE / "published_visible_specs.jsonl")
    args = ap.parse_args()
    rows = run(args.records)
    result = {
        "all_records": summarize(rows, None),
        "fully_specified_by_tags": summarize(rows, "full"),
        "completeness_full": summarize(rows, "complete"),
    }
    ooms = [r for r in rows if r.get("oom")]
    result["oom_records"] = {
        "n": len(ooms),
        "predicted_no_fit": sum(r.get("predicted_fits") is False for r in ooms),
    }  # type: ignore[dict-item]
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    if args.verbose:
        for r in rows:
            if "error" in r:
                print(
                    f"{r['id']:52s} {r['metric']:9s} meas {float(r['measured']) / 2**30:7.2f} GiB  pred {float(r['predicted']) / 2**30:7.2f} GiB  err {float(r['error']):+6.1%}  {r['phase']:14s} {'TAGS-OK' if r['full'] else ''} {'COMPLETE' if r['complete'] else ''}"
                )  # type: ignore[arg-type]
    for scope, summ in result.items():
        if scope == "oom_records":
            continue
        print(f"== {scope}")
        for metric, s in summ.items():  # type: ignore[union-attr]
            print(
                f"  {metric:10s} n={int(s['n']):3d}  median |err| {s['median_abs_error']:6.1%}  p90 |err| {s['p90_abs_error']:6.1%}  within ±10% {s['within_10pct']:5.0%}"
            )
    o = result["oom_records"]
    print(f"== OOM records: {o['n']}, predicted not to fit: {o['predicted_no_fit']}")  # type: ignore[index]
    return 0


if __name__ == "__main__":
    sys.exit(main())
