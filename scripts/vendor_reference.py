"""Copy the reference facts the product needs from ../shared/reference into estimator/data.

Run once when the reference changes; the installed product never reads ../shared. Each model file
keeps its source, notes and the published / computed parameter counts next to the config.
Models that cannot be built (no hidden size, no layer count) are skipped and listed.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT.parent / "shared" / "reference"
DATA = ROOT / "estimator" / "data"


def main() -> int:
    index = json.loads((REF / "model_configs" / "INDEX.json").read_text())
    out = DATA / "models"
    out.mkdir(parents=True, exist_ok=True)
    skipped = []
    for entry in index:
        name = Path(entry["file"]).name
        config = json.loads((REF / "model_configs" / name).read_text())
        text = config.get("text_config", config)
        if "hidden_size" not in text or not ("num_hidden_layers" in text or "n_layer" in text):
            skipped.append(entry["model_id"])
            continue
        record = {
            "model_id": entry["model_id"],
            "source": entry["source"],
            "cross_check": entry.get("cross_check", ""),
            "published_param_count": entry.get("published_param_count", ""),
            "computed_params": entry.get("computed_params"),
            "complete": entry.get("complete", False),
            "notes": entry.get("notes", ""),
            "config": config,
        }
        (out / name).write_text(json.dumps(record, indent=1, sort_keys=False) + "\n")
    for name in ("gpus.json", "pricing.json"):
        shutil.copyfile(REF / name, DATA / name)
    print("skipped (not buildable):", ", ".join(skipped) or "none")
    return 0


if __name__ == "__main__":
    sys.exit(main())
