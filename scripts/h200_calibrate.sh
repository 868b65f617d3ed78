#!/usr/bin/env bash
# The one prepared GPU calibration run (issue 4), for a session that has an H200 (or any CUDA GPU).
#
# Run it from the repository root on the device machine, e.g. through the device tool:
#   run(command="bash scripts/h200_calibrate.sh", carry=[".whl"], timeout_s=590)
# .whl/ (ignored by git: `echo /.whl/ >> .git/info/exclude`) carries the wheels the image lacks,
# downloaded here for cp312 manylinux x86_64 (device README, "Notes"): bitsandbytes, and pydantic,
# pydantic-core, annotated-types, typing-inspection if the image has no pydantic.
#
# What it does, inside ~9 minutes of wall time (GPU_MINUTES, default 7, is the sweep's own budget):
#   1. installs the carried wheels into /tmp/site; PYTHONPATH=/tmp/site:<repo> (no pip install -e)
#   2. prints the stack and the GPU (nvidia-smi)
#   3. `estimate calibrate run --backend cuda --sweep quick` (QLoRA, LoRA, full; checkpointing on/off;
#      growing shapes up to and past OOM), records to /tmp/records/<gpu-slug>/
#   4. the GPU tests (pytest -m gpu tests/calibration/test_gpu.py)
#   5. `estimate calibrate fit` -> $OUT/fitted.json, `estimate calibrate report --json` -> $OUT/report.json
#   6. tars the records into $OUT/records.tar.gz (the tool returns at most 8 files)
# Files back in $OUT: calibrate.log, plan.json, run_summary.json, fitted.json, report.json,
# records.tar.gz. Copy the records into calibration_data/records/ and run `estimate calibrate fit` here.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO" || exit 2
OUT="${OUT:-$REPO/h200_out}"
MINUTES="${GPU_MINUTES:-7}"
RECORDS=/tmp/records
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
export TOKENIZERS_PARALLELISM=false
PY=python3

main() {
    local t0=$SECONDS
    if compgen -G ".whl/*.whl" >/dev/null; then
        $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
            || { echo "wheel install failed"; return 3; }
        export PYTHONPATH="/tmp/site:$REPO"
    else
        echo "no carried wheels in .whl/: using the image's packages"
        export PYTHONPATH="$REPO"
    fi
    nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv || true
    $PY - <<'PYEOF' || return 4
import importlib
for name in ("torch", "transformers", "peft", "bitsandbytes", "pynvml", "pydantic", "typer", "rich"):
    m = importlib.import_module(name)
    print(f"{name:14s} {getattr(m, '__version__', '?')}")
import torch
print("cuda", torch.version.cuda, "available", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
PYEOF
    echo "== plan ($MINUTES GPU-minutes)"
    $PY -m service.cli calibrate run --backend cuda --sweep quick --gpu-minutes "$MINUTES" --dry-run \
        --gpu h200 --json >"$OUT/plan.json" || true
    echo "== sweep (started at +$((SECONDS - t0))s)"
    timeout $((MINUTES * 60 + 60)) $PY -m service.cli calibrate run --backend cuda --sweep quick \
        --gpu-minutes "$MINUTES" --out "$RECORDS" --json >"$OUT/run_summary.json"
    echo "sweep exit $? at +$((SECONDS - t0))s"
    cat "$OUT/run_summary.json" || true
    echo "== gpu tests"
    timeout 120 $PY -m pytest -q -p no:cacheprovider -m gpu tests/calibration/test_gpu.py || echo "gpu tests failed: $?"
    echo "== fit + report"
    $PY -m service.cli calibrate fit --records "$RECORDS" --out "$OUT/fitted.json" || echo "fit failed: $?"
    TUNECAST_CALIBRATION="$OUT/fitted.json" $PY -m service.cli calibrate report --records "$RECORDS" --json \
        >"$OUT/report.json" || echo "report failed: $?"
    TUNECAST_CALIBRATION="$OUT/fitted.json" COLUMNS=160 $PY -m service.cli calibrate report --records "$RECORDS" || true
    tar -czf "$OUT/records.tar.gz" -C "$(dirname "$RECORDS")" "$(basename "$RECORDS")" || true
    echo "done at +$((SECONDS - t0))s: $(find "$RECORDS" -name '*.json' | wc -l) records"
}

main 2>&1 | tee "$OUT/calibrate.log"
