"""Command line: profile one spec, or run a named sweep.

    python -m profiler run SPEC.json [--backend cpu|cpu-fake] [--layers N] [--out DIR]
    python -m profiler sweep {smoke,ci,full,real_size} --out DIR [--no-categories]

``run`` prints the calibration record (JSON) and, with ``--out``, writes it there atomically.
The spec file is a SPEC.md TrainingSpec in JSON with an inline ``{"model": {"config": {...}}}``.
"""

from __future__ import annotations

import argparse
import json
import sys


def _run(args: argparse.Namespace) -> int:
    from profiler.record import make_record, write_record

    with open(args.spec, encoding="utf-8") as fh:
        spec = json.load(fh)
    if args.backend == "cpu-fake":
        from profiler.simulate import simulate_spec

        measurement = simulate_spec(spec, num_layers=args.layers)
    else:
        from profiler.harness import run_spec

        measurement = run_spec(spec, num_layers=args.layers)
    record = make_record(measurement)
    if args.out:
        path = write_record(record, args.out)
        print(f"wrote {path}", file=sys.stderr)
    print(json.dumps(record, indent=2, sort_keys=True))
    return 0 if record["error"] is None else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m profiler``."""
    parser = argparse.ArgumentParser(prog="python -m profiler", description="tunecast profiler")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="profile one spec (JSON file)")
    run.add_argument("spec")
    run.add_argument("--backend", choices=("cpu", "cpu-fake"), default="cpu")
    run.add_argument("--layers", type=int, default=None, help="override num_hidden_layers")
    run.add_argument("--out", default=None, help="directory to write the record into")
    sweep = sub.add_parser("sweep", help="run a named sweep")
    sweep.add_argument("name")
    sweep.add_argument("--out", required=True)
    sweep.add_argument("--no-categories", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "run":
        return _run(args)
    from profiler.sweeps import main as sweep_main

    return sweep_main([args.name, "--out", args.out, *(["--no-categories"] if args.no_categories else [])])


if __name__ == "__main__":
    sys.exit(main())
