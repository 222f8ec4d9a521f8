"""`python -m bench [--quick] [--only p1,p2,p3,cold,cadence,eta,scale] [--seeds N,N,N]`: run, print, write docs/benchmarks.md.

Always exits 0 when the benchmarks ran (a missed goal is a figure, not a failure).
"""
from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
import time
import traceback

ALL = ("p1", "p2", "p3", "cold", "cadence", "eta", "scale")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a few minutes)")
    parser.add_argument("--only", default=",".join(ALL), help="comma-separated subset of " + ",".join(ALL))
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--seeds", help="comma-separated seeds of the ETA benchmark (default: bench.eta_accuracy.SEEDS)")
    args = parser.parse_args(argv)
    selected = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(selected) - set(ALL)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    logging.basicConfig(level=logging.ERROR)  # the poller's INFO/WARNING lines would drown the figures

    from bench import report

    started = time.monotonic()
    results: dict = {}

    def attempt(key, fn, *fn_args):
        print(f"== {key} ==", flush=True)
        t0 = time.monotonic()
        try:
            results[key] = fn(*fn_args, quick=args.quick)
        except Exception as exc:  # a broken benchmark is reported, not raised
            traceback.print_exc()
            results[key] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        print(f"   {key} took {time.monotonic() - t0:.0f} s", flush=True)

    if "cold" in selected:  # first: nothing else loaded or running yet
        from bench import cold_start
        attempt("cold", cold_start.run)
    if "p2" in selected:
        from bench import p2_lag_cost
        attempt("p2", p2_lag_cost.run)
    if "eta" in selected:
        from bench import eta_accuracy
        seeds = tuple(int(s) for s in args.seeds.split(",")) if args.seeds else eta_accuracy.SEEDS
        attempt("eta", functools.partial(eta_accuracy.run, seeds=seeds))
    if any(key in selected for key in ("p1", "p3", "cadence", "scale")):
        from bench import emulators
        try:
            with emulators() as emus:
                if "p1" in selected:
                    from bench import p1_throughput
                    attempt("p1", p1_throughput.run, emus)
                if "scale" in selected:
                    from bench import scale
                    attempt("scale", scale.run, emus)
                if "p3" in selected:
                    from bench import p3_memory
                    attempt("p3", p3_memory.run, emus)
                if "cadence" in selected:  # last: it measures sub-second delays, so nothing runs beside it
                    from bench import cadence
                    attempt("cadence", cadence.run, emus)
        except Exception as exc:
            traceback.print_exc()
            for key in ("p1", "p3", "cadence", "scale"):
                if key in selected and key not in results:
                    results[key] = {"error": f"emulators: {type(exc).__name__}: {exc}"[:500]}

    if "p1" in results and "p2" in results and "error" not in results["p1"] and "error" not in results["p2"]:
        from bench import cost
        results["cost"] = cost.run(results["p1"], results["p2"])

    elapsed = time.monotonic() - started
    if args.json:  # first: the raw results outlive a report that fails to format them
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1, default=str)
    path = report.write(results, args.quick, elapsed)
    print()
    print(path.read_text().split("\n## ", 1)[0])
    print(f"written to {path} ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
