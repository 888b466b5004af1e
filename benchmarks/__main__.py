"""`python -m benchmarks`: every benchmark in one run, written as Markdown + JSON + PNG plots.

    python -m benchmarks                    # the full suite (under 20 min on 2 cores, models cached)
    python -m benchmarks --quick            # every part at tiny sizes (~2-3 min): a smoke test
    python -m benchmarks --parts serving frontdoor --repeat 5 --out /tmp/bench

Parts (in this order; a failed part is reported and the others still run):
  serving    KServe predictor vs tritonserver vs in-process onnxruntime (benchmarks/serving.py)
  frontdoor  `mlsd serve`'s front door vs the predictor behind it (benchmarks/frontdoor.py)
  rollout    canary spec -> promotion / rollback on the local control plane (benchmarks/rollout.py)
  operator   N ModelDeployments at once, reconcile latency, API requests (benchmarks/operator_ready.py)

See docs/benchmarks.md for what each figure means and how it is measured.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
import traceback
from pathlib import Path

from benchmarks import _report
from benchmarks._env import environment, one_line

PARTS = ("serving", "frontdoor", "rollout", "operator")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="output directory (default benchmarks/results/<UTC timestamp>)")
    parser.add_argument("--quick", action="store_true", help="every part at tiny sizes (~2-3 min): a smoke test")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--repeat", type=int, help="repeats of the quick parts (serving, front door, operator N <= 10)")
    parser.add_argument("--counts", type=int, nargs="+", help="operator: N ModelDeployments (default 10 100 500 1000)")
    parser.add_argument("--cases", nargs="+", help="serving: case studies (default all four)")
    parser.add_argument("--seconds", type=float, help="serving/front door: measured seconds per cell")
    parser.add_argument("--models", type=Path, help="model repository root (default ~/.cache/mlsd/bench[-small])")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    from benchmarks import frontdoor, operator_ready, rollout, serving

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or Path(__file__).resolve().parent / "results" / (stamp + ("-quick" if args.quick else ""))
    env = environment()
    print(f"# environment: {one_line(env)}", flush=True)
    print(f"# writing to {out}", flush=True)
    results: dict = {"mode": "quick (smoke sizes: not for reading)" if args.quick else "full",
                     "command": "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv),
                     "environment": env, "parts": {}, "durations_s": {}}
    models = args.models or serving.default_models(args.quick)

    matrix = serving.Matrix.quick() if args.quick else serving.Matrix()
    matrix.cases = args.cases or matrix.cases
    setup = frontdoor.Setup.quick() if args.quick else frontdoor.Setup()
    scale = operator_ready.Scale.quick() if args.quick else operator_ready.Scale()
    scale.counts = args.counts or scale.counts
    if args.repeat:
        matrix.repeat = setup.repeat = scale.repeat = args.repeat
    if args.seconds:
        matrix.seconds = setup.seconds = args.seconds
    timings = rollout.Timings.quick() if args.quick else rollout.Timings()

    runners = {
        "serving": lambda log: serving.run(models, matrix, small=args.quick, log=log),
        "frontdoor": lambda log: frontdoor.run(models, setup, small=args.quick, log=log),
        "rollout": lambda log: rollout.run(timings, log=log),
        "operator": lambda log: operator_ready.run(scale, log=log),
    }
    started = time.monotonic()
    failed = []
    for part in (p for p in PARTS if p in args.parts):
        now = {**env, "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
        print(f"\n## {part} | {one_line(now)}", flush=True)
        part_started = time.monotonic()
        try:
            results["parts"][part] = runners[part](lambda line: print(line, flush=True))
        except Exception as error:  # noqa: BLE001 - one failed part must not lose the others' figures
            traceback.print_exc()
            results["parts"][part] = {"error": f"{type(error).__name__}: {error}"}
            failed.append(part)
        reported = results["parts"][part].get("tritonserver_reported")
        if reported:
            env["versions"]["tritonserver"] = f"{reported} (as the running server reports it)"
        results["durations_s"][part] = time.monotonic() - part_started
        results["total_s"] = time.monotonic() - started
        results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        _report.write(results, out)     # after every part: an interrupted run keeps what it measured
        print(f"## {part} done in {results['durations_s'][part]:.0f} s (total {results['total_s'] / 60:.1f} min)",
              flush=True)
    written = _report.write(results, out)
    print("\n" + (out / "results.md").read_text())
    print("wrote " + ", ".join(str(p) for p in written))
    if failed:
        print(f"failed parts: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
