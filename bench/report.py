"""docs/benchmarks.md: one table per benchmark, the goal and PASS/MISS, machine and date."""
from __future__ import annotations

import os
import platform
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

from bench import ROOT
from bench.p2_lag_cost import STEERED

REPORT = ROOT / "docs" / "benchmarks.md"


def _machine() -> str:
    import psutil

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs ({cpu}), "
            f"{psutil.virtual_memory().total / 2**30:.1f} GiB RAM, Python {sys.version.split()[0]}")


def _code_version() -> str:
    import hashlib
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "functions", "main.py"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        head, dirty = "?", ""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "functions").rglob("*.py")):
        digest.update(path.read_bytes())
    return f"git {head}{' + uncommitted changes' if dirty else ''}; functions/*.py sha256 {digest.hexdigest()[:12]}"


def _f(value, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def p1_section(r: dict) -> list[str]:
    out = [
        "## P1 throughput and cost per poll (one poll run)",
        "",
        f"Real Firestore and Pub/Sub emulators; simulator in its own process at {r['latency_ms']:g} ms per call; "
        f"{r['operations']:,} due operations per run. *All changes*: every operation has finished in the "
        "simulator, so every poll is a state change and takes the whole path (GET, record + outbox entry in one "
        "commit, publish, outbox delete). *Quiet*: every operation is still running and already seen running, so "
        "every poll changes nothing (GET, one record write). Baselines: a naive sequential loop (GET → Firestore "
        f"write → synchronous publish on the all-changes path) over {r['baseline_operations']} operations, same "
        "emulators and simulator, same run. Firestore reads/writes/deletes are counted at the adapter boundary "
        "(functions/adapters/firestore_usage.py) over the whole run: per poll, everything the run did ÷ its polls "
        "(what the cost table uses); *own writes/poll*, the records' and the outbox's alone (outbox recovery "
        "included), the figure the ≤ 1 write goal is judged on; *side writes/run*, the shard leases' and the learnt "
        "durations', which a run makes however many polls it does. "
        "CPU per GET = the poller process's CPU seconds ÷ GETs (the simulator and emulators run in processes of "
        "their own).",
        "",
        f"Goal: {r['goal']}.",
        "",
        "| path | run | ops polled | wall s | ops/s | × baseline | % of ceiling | poller CPU ms/GET | "
        "reads/poll | writes/poll | own writes/poll | side writes/run | deletes/poll | result |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for path, base in r.get("baselines", {"all changes": r["baseline"]}).items():
        out.append(f"| {path} | naive baseline | {base['operations']} | {_f(base['wall_s'], 2)} | "
                   f"{_f(base['ops_per_s'], 1)} | 1.0 | – | – | – | – | – | – | – | |")
        for row in (x for x in r["runs"] if x.get("path", "all changes") == path):
            per = row.get("per_poll", {})
            out.append(f"| {path} | lrowatch, concurrency {row['concurrency']} | {row['polled']:,} | "
                       f"{_f(row['wall_s'], 2)} | {_f(row['ops_per_s'], 1)} | {_f(row['ratio'], 1)} | "
                       f"{row['utilisation']:.0%} of {row['ceiling_ops_per_s']:.0f} | {_f(row.get('cpu_ms_per_get'), 2)} | "
                       f"{_f(per.get('reads'), 2)} | {_f(per.get('writes'), 3)} | "
                       f"{_f((row.get('per_poll_own') or {}).get('writes'), 3)} | "
                       f"{(row.get('per_run_side') or {}).get('writes', '–')} | {_f(per.get('deletes'), 2)} | "
                       f"**{row['verdict']}** |")
    out += ["", "Where the time goes: wall time per adapter call, summed over threads (calls overlap, so totals "
            "exceed the run's wall time; the due query, group commits and publishing each run on threads of "
            "their own; the GETs run on the client's event loop, so `api.start_gets` is only the hand-off to it, "
            "and each GET's own time is the simulator's latency).", ""]
    for row in r["runs"]:
        cpu = ", ".join(f"{k} {v} s" for k, v in row["cpu_s"].items())
        out += [f"*{row.get('path', 'all changes')}, concurrency {row['concurrency']}* — CPU used during the "
                f"run: {cpu} (the machine has {os.cpu_count()} cores × {row['wall_s']} s = "
                f"{(os.cpu_count() or 1) * row['wall_s']:.1f} core-seconds). Firestore over the run: "
                f"{row.get('firestore')}.{_cpu_bound(row, r)}", ""] + _calls_table(row["profile"])
        spots = row.get("hot_spots")
        if spots:
            out += [f"Profile (py-spy, all threads, {spots['samples']:,} samples at 200 Hz). By library: " +
                    ", ".join(f"{k} {v}%" for k, v in spots["by_library"]) + ".", "",
                    "| self time | % | total time (incl. callees) | % |", "|---|---:|---|---:|"]
            for (s_name, s_pct), (t_name, t_pct) in zip(spots["self"], spots["total"]):
                out.append(f"| `{s_name}` | {s_pct} | `{t_name}` | {t_pct} |")
            out.append("")
    for path, base in r.get("baselines", {"all changes": r["baseline"]}).items():
        out += [f"*Baseline, {path}* per operation:", ""] + _calls_table(base["profile"])
    return out


def _cpu_bound(row: dict, r: dict) -> str:
    """What this machine's cores allow at the CPU every process spent per GET in this run, and with a
    poller that cost nothing: the stack (emulators, simulator) shares the cores the poller runs on."""
    cores, polled = os.cpu_count() or 1, row.get("polled") or 0
    if not polled:
        return ""
    total = sum(row["cpu_s"].values()) / polled
    stack = total - row["cpu_s"].get("bench process (poller)", 0.0) / polled
    base = (r.get("baselines") or {}).get(row.get("path", "all changes"), {}).get("ops_per_s")
    times = (lambda rate: f" = {rate / base:.0f}× the naive loop") if base else (lambda rate: "")
    return (f" At this run's CPU per GET, all processes together ({1000 * total:.1f} ms), {cores} cores allow at "
            f"most {cores / total:.0f} ops/s{times(cores / total)}; with a poller that cost no CPU at all "
            f"({1000 * stack:.1f} ms of emulators and simulator per GET), {cores / stack:.0f} ops/s"
            f"{times(cores / stack)}.") if total > 0 and stack > 0 else ""


def _calls_table(profile: list[dict]) -> list[str]:
    return (["| call | calls | total s | mean ms |", "|---|---:|---:|---:|"]
            + [f"| {p['call']} | {p['calls']:,} | {p['total_s']:.2f} | {p['mean_ms']:.1f} |" for p in profile]
            + [""])


def p2_section(r: dict) -> list[str]:
    out = [
        "## P2 notification lag and GET calls (discrete-event simulation, no I/O)",
        "",
        f"{r['n_ops']:,} operations per workload, fixed seed; lag = time from the operation finishing to the "
        "poll that sees it. Adaptation (functions/domain/adaptive.py) learns per-kind duration statistics from "
        "a separate training set of the same workload, from poll times only. lrowatch polls inside a run that "
        "checks due operations continuously (no quantisation); the *(info)* row adds the idle gap between "
        "minutely runs (50 s budget, claims stop 2 s early). api-core is modelled as its code behaves: a GET at "
        "once, then sleeps of `uniform(0, cap)` (full jitter), cap 1 s ×1.5 up to 20 s.",
        "",
        f"Goal: {r['goal']}.",
        "",
    ]
    for wl in r["workloads"]:
        out += [f"**{wl['name']}**", "",
                "| strategy | lag p50 s | lag p95 s | lag max s | GETs/op | p95 lag ÷ api-core | GETs ÷ api-core | result |",
                "|---|---:|---:|---:|---:|---:|---:|---|"]
        for row in wl["rows"]:
            out.append(f"| {row['strategy']} | {_f(row['lag_p50_s'])} | {_f(row['lag_p95_s'])} | "
                       f"{_f(row['lag_max_s'], 0)} | {_f(row['calls_per_op'])} | {_f(row['lag_p95_vs_api_core'], 2)} | "
                       f"{_f(row['calls_vs_api_core'], 2)} | {('**' + row['verdict'] + '**') if row['verdict'] else ''} |")
        out.append("")
    rec = r["recommended_policy"]
    met_adapt, met_plain = r["recommended_workloads_met"]
    out += [f"Recommended default policy (grid of {r['grid_size']} policies; ranked by workloads meeting the goal "
            f"with adaptation, then without, then fewest GETs): initial_delay_s={rec['initial_delay_s']:g}, "
            f"multiplier={rec['multiplier']:g}, max_delay_s={rec['max_delay_s']:g}, jitter={rec['jitter']:g} — "
            f"meets the goal on {met_adapt}/{len(r['workloads'])} workloads with adaptation, "
            f"{met_plain}/{len(r['workloads'])} without. Policies in the grid meeting the goal on every workload: "
            f"{r['grid_meeting_adaptive']} with adaptation, {r['grid_meeting_plain']} without.", ""]
    checks = r.get("seed_checks") or []
    if checks:
        passed = sum(c["verdict"] == "PASS" for c in checks)
        out += [f"The default policy + adaptation on {len(checks) // 2} seeds (fresh training and test operations "
                f"each, api-core's own jitter included): {passed} of {len(checks)} workload runs meet the goal.", "",
                "| seed | workload | lag p95 s | api-core lag p95 s | p95 lag ÷ api-core | GETs ÷ api-core | result |",
                "|---:|---|---:|---:|---:|---:|---|"]
        out += [f"| {c['seed']} | {c['workload']} | {_f(c['lag_p95_s'])} | {_f(c['api_core_lag_p95_s'])} | "
                f"{_f(c['lag_p95_vs_api_core'], 2)} | {_f(c['calls_vs_api_core'], 3)} | {c['verdict']} |"
                for c in checks]
        out.append("")
    steering = r.get("progress_steering") or []
    if steering:
        out += ["**Steered by progress** (mixed kinds, each operation reporting progressPercent: queued at 0 % for "
                "up to a quarter of its life, then a front- or back-loaded curve, as in the ETA accuracy workload). "
                "With a progress trend, the poller skips the polls its plan makes before the soonest end the trend "
                "allows (never more than max_delay_s apart) and polls densely from there "
                "(functions/domain/adaptive.py steered_delay). Each kind scores its finishes (the time really left at "
                "the last poll ÷ the soonest end that poll allowed); from 30 scores on, its soonest ends are scaled by "
                "their 2 % quantile (at most 1: DurationStats.calibration). Until then, once more than 5 % of its "
                "finishes came before the soonest end after a gap over 15 s (*early*), its progress no longer steers "
                "(adaptive.trusts_progress). The statistics start from the training set and learn as the test "
                "operations finish. *(info)* rows: every trend trusted as it is (no calibration, no count), and an "
                "API whose progress misleads (it stops at 60 % when the operation ends). *Worst kind*: the highest "
                "lag p95 of any one kind, where the promise (95 % within 15 s) is kept or not.", "",
                *_lag_table(steering, {
                    "GETs ÷ adaptation alone": lambda x: _f(x["calls_vs_adaptation"], 2),
                    "early": lambda x: "" if x.get("early_share") is None else format(x["early_share"], ".1%")},
                    {"result": lambda x: f"**{x['verdict']}**" if x["verdict"] else ""})]
        out.append("")
    late = r.get("late_handover") or []
    if late:
        out += ["*(info)* **Handed over late** (mixed kinds, each operation submitted to lrowatch between 0 and "
                "75 % of its life after its API started it, uniformly; first polled from the submission, as a new "
                "operation is). The learnt schedule places polls by the time the operation has run: counted from "
                "the submission (before `started_at`), it polls a late operation as a young one and misses the ends "
                "of its kind; counted from the start its API reports (Record.started, as deployed), it polls it "
                "where operations of its kind end. api-core polls from the submission.", "",
                *_lag_table(late)]
        out.append("")
    return out


def _lag_table(rows: list[dict], middle: dict | None = None, last: dict | None = None) -> list[str]:
    """P2's per-seed table of lag and GETs by strategy; `middle` and `last` add columns (header: cell of a row)
    before and after the two ratios to api-core."""
    columns = {"seed": lambda x: x["seed"], "strategy": lambda x: x["strategy"],
               "lag p50 s": lambda x: _f(x["lag_p50_s"]), "lag p95 s": lambda x: _f(x["lag_p95_s"]),
               "worst kind lag p95 s": lambda x: _f(x["worst_kind_lag_p95_s"]),
               "lag max s": lambda x: _f(x["lag_max_s"], 0), "GETs/op": lambda x: _f(x["calls_per_op"]),
               **(middle or {}),
               "p95 lag ÷ api-core": lambda x: _f(x["lag_p95_vs_api_core"], 2),
               "GETs ÷ api-core": lambda x: _f(x["calls_vs_api_core"], 2), **(last or {})}
    aligns = ["---" if name in ("strategy", *(last or {})) else "---:" for name in columns]
    return (["| " + " | ".join(columns) + " |", "|" + "|".join(aligns) + "|"]
            + ["| " + " | ".join(str(cell(x)) for cell in columns.values()) + " |" for x in rows])


def eta_section(r: dict) -> list[str]:
    seeds = r.get("seeds") or ["?"]
    out = [
        "## ETA accuracy (replay of the P2 workloads and a progress-reporting one, no I/O)",
        "",
        f"{r['n_ops']:,} operations per workload, seeds {', '.join(map(str, seeds))} (tables: the first; verdicts: "
        "each), polled on lrowatch's adaptive schedule with per-kind statistics learnt from a separate training set "
        "(as in P2). At 25, 50 and 75 % of each operation's life, and at one moment drawn uniformly over it "
        "(*random*), the estimate is the one on the record, made at the last poll before that moment. Error = "
        "|eta − true end| ÷ true time left at that moment; coverage = share of true ends inside [eta_low, eta_high] "
        "(an 80 % interval by design). Errors are compared on the moments where the blend and both baselines had an "
        "estimate (*paired*); *answered* is the share of all moments with an estimate. The progress-reporting "
        "workload queues each operation at 0 % for up to a quarter of its life, then reports integer "
        "progressPercent along a front- or back-loaded curve (bench/eta_accuracy.py).",
        "",
        "How to read it: the estimator (functions/domain/eta.py) answers someone who asks at a random moment of an "
        "operation's life, each operation counting once. At that moment (*random*) its interval should cover 80 % "
        "and its errors be lowest. A fixed checkpoint also tells where in its life the operation is, which the "
        "estimator cannot know: early (25 %) the truth lies above what a random-moment reading expects, late "
        "(75 %) below, so the blend is pulled toward mid-life there, its coverage is off 80 % in opposite "
        "directions, and on a kind spread over orders of magnitude it covers more than 80 % at all three: for "
        "log-uniform durations, weighed 1/D, the interval for the end, t seconds in, is about 1.1·t..10·t, which "
        "holds the truth exactly when the operation is between 10 % and 90 % of its life: at a random moment 80 % "
        "of the time, at 25, 50 or 75 % always (short of the histogram's and the polls' granularity). "
        "Where elapsed time is all there is "
        "(no progress), the operations that decide the 25 % median against the per-kind median are mostly ones "
        "that ran long for their kind, seen at 0.30–0.40 of its median (they want a later estimate than the "
        "median), and those that decide the 75 % p90 include short ones seen at 0.39–0.46 of it (they want an "
        "earlier one): the same elapsed time, where it says almost nothing. The sweep at the end weighs each "
        "learnt duration D by D^-w instead of 1/D (w = 0: a reader at a fixed elapsed time; w = 1: ours); weights "
        f"ahead of the per-kind median at every checkpoint of both workloads: {_sweep_winners(r)}. Where none "
        "is, no weighing of elapsed time alone serves every checkpoint; ours takes the calibrated reading "
        f"rather than one tuned to a checkpoint.{_oracle_lesson(r)} With progress, the same pull toward mid-life "
        "keeps the blend level with linear progress alone on the median at 75 % (within 0.01, ahead or behind by seed), ahead on the "
        "p90. The checkpoints' verdicts are the goal; the random moment's are shown beside them, for information.",
        "",
        f"Goal: {r['goal']}.",
        "",
    ]
    for wl in r["workloads"]:
        by_seed = wl.get("seed_verdicts") or {seeds[0]: wl["verdicts"]}
        out.append(f"**{wl['name']}**:")
        out.append("")
        at_random = wl.get("seed_random_verdicts") or {}
        for base in wl["verdicts"]:
            if wl["verdicts"][base] == "n/a":
                continue
            out.append(f"- vs {base}: " + "; ".join(f"seed {seed} **{v[base]}**" for seed, v in by_seed.items()))
            if at_random:
                out.append("  - (info) at a random moment: " + "; ".join(
                    f"seed {seed} {v[base]}" for seed, v in at_random.items()))
        out += ["", "| at | strategy | paired | answered | error p50 | error p90 | coverage |",
                "|---:|---|---:|---:|---:|---:|---:|"]
        for row in wl["rows"]:
            if not row["paired"]:
                continue
            at = row["checkpoint"] if isinstance(row["checkpoint"], str) else f"{row['checkpoint']:.0%}"
            coverage = "—" if row["coverage"] is None else f"{row['coverage']:.0%}"
            out.append(f"| {at} | {row['strategy']} | {row['paired']} | {row['answered']:.0%} | "
                       f"{_f(row['err_p50'], 2)} | {_f(row['err_p90'], 2)} | {coverage} |")
        out.append("")
        first = {seed: x for seed, x in (wl.get("seed_first_checkpoint") or {}).items() if x}
        if first and not wl.get("progress"):
            out += ["(info) Who is read at 25 % of life, seed by seed: the operations polled before a quarter of "
                    "their life, so long ones for their kind. Share read at an elapsed time below their kind's 5th "
                    "percentile (where having lasted that long says nothing); their durations' median ÷ the kind's; "
                    "and the best any reading of the kind alone could do there, the one multiple of each kind's "
                    "median with the lowest median error, fitted on these very operations (an oracle): "
                    + "; ".join(f"seed {seed}: {x['reads']} reads, {x['elapsed_below_q05']:.0%} below the 5th "
                                f"percentile, durations {x['duration_over_median_p50']:.2f}× the median, oracle "
                                f"{x['oracle_multiple']:.2f}× the median: p50 {x['oracle_err_p50']:.3f} vs the "
                                f"median's {x['median_err_p50']:.3f}" for seed, x in first.items()) + ".", ""]
    sweep = r.get("weight_sweep")
    if sweep:
        names = [k for k in sweep["rows"][0] if k != "weight"]
        out += [f"(info) History alone, each learnt duration weighed D^-w, vs the per-kind median (seed "
                f"{sweep['seed']}; bench/eta_accuracy.py weight_sweep):", "",
                "| w | " + " | ".join(names) + " |", "|---:|" + "---|" * len(names)]
        out += [f"| {row['weight']:g} | " + " | ".join(row[n] for n in names) + " |" for row in sweep["rows"]]
        out.append("")
    oracle = r.get("checkpoint_oracle")
    if oracle:
        shape = ", ".join(f"{x:g} → {end:.2f}" for x, end in oracle["shape"])
        blend_shape = ", ".join(f"{x:g} → {_f(end, 2)}" for x, end in oracle["blend_shape"])
        out += ["(info) Could any reading of elapsed time alone win every checkpoint, and at what cost? A "
                "non-decreasing end estimate per elapsed time, both ÷ the kind's median, constant between 24 "
                "log-spaced knots, fitted by a seeded random search to P2 mixed kinds' own checkpoint reads on seed "
                f"{oracle['fit_seed']} (an oracle; bench/eta_accuracy.py checkpoint_oracle). Its worst figure there "
                f"is {oracle['fit_ratio']:.2f}× the per-kind median's. Its end at elapsed 0.1, 0.2, 0.3, 0.5 and 1 "
                f"× the median: {shape} (the blend's, median of its reads there: {blend_shape}). Read on every seed "
                "(the fit stays that of the first):", "",
                "| seed | vs per-kind median at 25/50/75 % | at a random moment vs per-kind median | random p50 / p90: "
                "oracle | random p50 / p90: blend |", "|---:|---|---|---|---|"]
        out += [f"| {x['seed']} | {x['verdict']} | {x['random_verdict']} | {_f(x['random'][0][0], 2)} / "
                f"{_f(x['random'][0][1], 2)} | {_f(x['random'][1][0], 2)} / {_f(x['random'][1][1], 2)} |"
                for x in oracle["seeds"]]
        out.append("")
    late = r.get("late_handover") or []
    if late:
        out += ["(info) Handed over late (P2 mixed kinds, each operation submitted between 0 and 75 % of its life "
                "after its API started it, as in P2's rows of that name; bench/eta_accuracy.py late_handover): the "
                "history estimate with the time elapsed counted from the start its API reports (as deployed) and "
                "from the submission, beside the per-kind median, on the moments where all three answer (25 % is "
                "mostly before the hand-over). Counted from the submission, a late operation's age is understated, "
                "so its estimates come later: at 75 % that is worse on both figures; at 50 % it is worse on the p90 "
                "but better on the median, the same pull toward later estimates that a reader known to be early in "
                "the life wants (see the 25 % reads above).", "",
                "| seed | at | estimate | paired | error p50 | error p90 |", "|---:|---:|---|---:|---:|---:|"]
        out += [f"| {x['seed']} | {x['checkpoint']:.0%} | {x['strategy']} | {x['paired']} | "
                f"{_f(x['err_p50'], 2)} | {_f(x['err_p90'], 2)} |" for x in late]
        out.append("")
    return out


def _p2_seeds(r: dict) -> str:
    checks = r.get("seed_checks") or []
    passed = sum(c["verdict"] == "PASS" for c in checks)
    text = f" (default + adaptation on {len(checks) // 2} seeds: {passed}/{len(checks)} runs PASS)" if checks else ""
    steered = [x for x in r.get("progress_steering") or [] if x["strategy"] == STEERED]
    if steered:
        ratios = [x["calls_vs_adaptation"] for x in steered]
        text += (f" / steered by progress: {sum(x['verdict'] == 'PASS' for x in steered)}/{len(steered)} seeds PASS, "
                 f"GETs {min(ratios):.2f}–{max(ratios):.2f}× adaptation alone")
    return text


def _oracle_lesson(r: dict) -> str:
    oracle = r.get("checkpoint_oracle")
    if not oracle:
        return ""
    elapsed, end = oracle["shape"][0]
    return (" A reading fitted to the checkpoints' own reads does win them (the oracle at the end): what it learns is "
            f"where in the life the reader stands (its end for an operation seen at {elapsed:g}× its kind's median is "
            f"{end / elapsed:.1f}× the time elapsed), which a reader at a random moment does not tell, and its table "
            "shows what that costs such a reader.")


def _sweep_winners(r: dict) -> str:
    rows = (r.get("weight_sweep") or {}).get("rows") or []
    winners = [f"{row['weight']:g}" for row in rows
               if all(v == "AHEAD" for k, v in row.items() if k != "weight")]
    return ", ".join(winners) if winners else "none" if rows else "not swept"


def _eta_summary(r: dict) -> str:
    """Per workload and baseline: ahead on every seed, or behind on how many (and where, on the first)."""
    parts = []
    for w in r["workloads"]:
        by_seed = w.get("seed_verdicts") or {0: w["verdicts"]}
        said = []
        for base, verdict in w["verdicts"].items():
            if verdict == "n/a":
                continue
            behind = [v[base] for v in by_seed.values() if v[base] != "AHEAD"]
            said.append(f"vs {base} " + (f"AHEAD on {len(by_seed)}/{len(by_seed)} seeds" if not behind else
                                         f"BEHIND on {len(behind)}/{len(by_seed)} seeds, e.g. {behind[0][7:]}"))
        parts.append(f"{w['name'].split(' (')[0]}: " + "; ".join(said))
    return " / ".join(parts) + f" → {r['verdict']}"


def p3_section(r: dict) -> list[str]:
    out = [
        "## P3 memory (peak RSS of one poll run)",
        "",
        f"All pending operations are records in the Firestore emulator; the same {r['due_per_run']:,} are due "
        "(and finished in the simulator), the rest fall due in an hour, so the work is equal at both sizes and "
        "any growth comes from the number of pending operations. One run in a fresh subprocess; peak = the "
        "child's VmHWM (/proc/self/status); floor = RSS after imports and client construction, before the run. "
        "(ru_maxrss is shown for reference only: Linux folds the forked parent's pre-exec high-water mark into "
        "it, so it tracks the benchmark process that loaded the records, not the poll run.)",
        "",
        f"Goal: {r['goal']}.",
        "",
        "| pending operations | polled | floor MB | peak MB (VmHWM) | ru_maxrss MB | run s | load s |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in r["sizes"]:
        if "error" in row:
            out.append(f"| {row['pending']:,} | error: {row['error'][-200:]!r} | | | | | |")
        else:
            out.append(f"| {row['pending']:,} | {row['polled']:,} | {_f(row['floor_rss_mb'])} | "
                       f"{_f(row['peak_rss_mb'])} | {_f(row.get('ru_maxrss_mb'))} | {_f(row['run_s'])} | "
                       f"{_f(row['load_s'])} |")
    if "growth" in r:
        out += ["", f"Growth {r['sizes'][0]['pending']:,} → {r['sizes'][-1]['pending']:,}: "
                f"**{r['growth']:.2f}×**, peak {max(x['peak_rss_mb'] for x in r['sizes']):.1f} MB: **{r['verdict']}**."
                + ("" if r.get("complete", True) else
                   " (A run that polled fewer than the due slice hit its budget: the emulator's due query slows "
                   "down with collection size, having no real indexes; memory is still the figure measured.)")]
    return out + [""]


def cadence_section(r: dict) -> list[str]:
    cpu = ", ".join(f"{k} {v} s" for k, v in r["cpu_s"].items())
    return [
        "## Cadence: delay from due time to GET (one poll run)",
        "",
        f"Real Firestore and Pub/Sub emulators; simulator in its own process with no added latency. "
        f"{r['operations']:,} operations whose next_poll_at fall due at random (fixed seed) over "
        f"{r['spread_s']:g} s, the first {r['lead_s']:g} s after the run starts; one run, budget "
        f"{r['budget_s']:g} s, concurrency {r['concurrency']}. Each operation has finished in the simulator, "
        "so it is polled once, at the due time written by the benchmark (not one computed by the code "
        "measured), and every GET is a state change (claim, GET, record + outbox, publish). Delay = the "
        "wall-clock start of the operation's GET (a wrapper around the API client) minus its due time; the "
        "run's own RunSummary lag (taken just before the GET) is shown beside it. Not saturated = GETs in "
        "flight never reached the concurrency limit.",
        "",
        f"Goal: {r['goal']}.",
        "",
        "| ops polled | GETs | due→GET p50 s | p95 s | max s | min s | summary lag p50 / p95 s | "
        "peak GETs in flight | saturated | result |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
        f"| {r['polled_ops']:,} / {r['operations']:,} | {r['gets']:,} | {r['delay_p50_s']:.3f} | "
        f"{r['delay_p95_s']:.3f} | {r['delay_max_s']:.3f} | {r['delay_min_s']:.3f} | "
        f"{_f(r['summary_lag_p50_s'], 3)} / {_f(r['summary_lag_p95_s'], 3)} | "
        f"{r['peak_in_flight']} / {r['concurrency']} | {'no' if r['unsaturated'] else 'yes'} | "
        f"**{r['verdict']}** |",
        "",
        f"The run lasted {r['wall_s']:.1f} s and stopped {r['ended_after_last_due_s']:.2f} s after the last "
        f"operation fell due (nothing else due within its budget); changed {r['changed']:,}, published "
        f"{r['published']:,}, errors {r['errors']}, lost claims {r['lost_claims']}, GETs before their due "
        f"time {r['early_gets']}. CPU used during the run: {cpu}.",
        "",
    ]


def cost_section(r: dict) -> list[str]:
    out = [
        "## Cost of tracking 1,000 operations (list prices)",
        "",
        f"Job mix: {r['job_mix']}. GETs per operation from P2's simulation of each strategy "
        f"(lrowatch with adaptation {r['gets_per_op']['lrowatch']:.1f}, the Workflows connector's default "
        f"polling {r['gets_per_op']['workflows']:.1f}, api-core's default {r['gets_per_op']['api_core']:.1f}); "
        "Firestore reads/writes/deletes per poll and poller CPU per GET from P1's counts on the quiet and "
        "all-changes paths, plus one write for each record's creation. Function CPU is the marginal CPU of the "
        "polls (512 MiB, request-based billing); the scheduled poll runs themselves cost "
        f"about ${r['fixed_poll_month']:.0f} a month of instance time whatever they track (50 s a minute). "
        "The GETs themselves are free with every strategy (quota, not money: see the rate limits).",
        "",
        "| lrowatch item | count | USD |", "|---|---:|---:|",
    ]
    counts = r["counts"]
    units = {"Firestore reads": counts["Firestore reads"], "Firestore writes": counts["Firestore writes"],
             "Firestore deletes": counts["Firestore deletes"], "Pub/Sub": f"{counts['Pub/Sub bytes']:,} bytes",
             "function CPU + memory (marginal)": f"{counts['poller CPU s']} CPU s"}
    for item, usd in r["lrowatch"].items():
        count = units.get(item, "")
        out.append(f"| {item} | {count if isinstance(count, str) else f'{count:,}'} | {usd:.4f} |")
    out += [f"| **lrowatch, total** | {counts['GETs']:,} GETs | **{r['lrowatch_total']:.4f}** |", "",
            "| the same tracking as | billed for | USD |", "|---|---|---:|",
            f"| lrowatch | Firestore, Pub/Sub, poll CPU (above) | {r['lrowatch_total']:.4f} |",
            f"| a Cloud Workflows connector call per operation | {r['workflows_steps']:,} internal steps (each "
            f"polling attempt is a step, plus the call's own) | {r['workflows_total']:.4f} |",
            f"| google-api-core `Operation.result()` in a VM | an e2-small for the 3 h the longest job runs | "
            f"{r['api_core_total']:.4f} |", "", "Prices (USD, list, no free tier):", ""]
    out += [f"- {k}: {v['usd']:.10g} — {v['source']}" for k, v in r["prices"].items()]
    return out + [""]


def scale_section(r: dict) -> list[str]:
    out = [
        "## Scale: one poll process, then two shard processes, against one backlog",
        "",
        f"P1's quiet path (GETs at {r['latency_ms']:g} ms), 2 shards, a fresh backlog of the same size each time; "
        "each process a fresh interpreter wired as a function instance. The machine's 2 cores are shared by the "
        "pollers, both emulators and the simulator (and, when this ran, by other engineers' test suites), so the "
        "gain says how far a second shard process goes on this machine, not on Cloud Run, where each shard run "
        "gets an instance of its own.",
        "",
        "| processes | ops polled | busy s | ops/s | poller CPU s (each) | poller CPU ms/GET | other CPU s |",
        "|---:|---:|---:|---:|---|---:|---|",
    ]
    for row in r["runs"]:
        out.append(f"| {row['processes']} | {row['polled']:,} | {row['wall_s']} | {row['ops_per_s']} | "
                   f"{row['poller_cpu_s']} | {row['cpu_ms_per_get']} | {row['other_cpu_s']} |")
    return out + ["", f"Two shard processes: **{r['gain']:.2f}×** the throughput of one.", ""]


def cold_section(r: dict) -> list[str]:
    return [
        "## Cold start (`import main`)",
        "",
        f"Fresh interpreter per sample, import timed inside it (interpreter start excluded), median of "
        f"{r['repeats']}, alternating. Libraries alone: `{r['libs']}`.",
        "",
        f"Goal: {r['goal']}.",
        "",
        "| import | median s | samples s |",
        "|---|---:|---|",
        f"| `import main` | {r['main_median_s']:.3f} | {', '.join(f'{s:.3f}' for s in r['main_samples_s'])} |",
        f"| client libraries | {r['libs_median_s']:.3f} | {', '.join(f'{s:.3f}' for s in r['libs_samples_s'])} |",
        "",
        f"Ratio **{r['ratio']:.2f}×**. Network during `import main` (sockets created, connects, DNS look-ups): "
        f"{r['network_on_import']} — a socket created without connect is urllib3's import-time IPv6 probe "
        f"(it binds ::1), which the client libraries alone do too; no connection, no look-up. "
        f"Result: **{r['verdict']}**.",
        "",
    ]


KEYS = ("p1", "cost", "scale", "p2", "p3", "cold", "cadence", "eta")
TITLES = {"p1": "P1 throughput and cost per poll", "p2": "P2 lag and cost", "p3": "P3 memory", "cold": "Cold start",
          "cadence": "Cadence (due → GET)", "eta": "ETA accuracy", "cost": "Cost of tracking 1,000 operations",
          "scale": "Scale (shard processes)"}
# How each benchmark's section heading begins (its own heading, or `## {title}` when it failed).
HEADINGS = {"p1": "## P1 ", "p2": "## P2 ", "p3": "## P3 ", "cold": "## Cold start", "cadence": "## Cadence",
            "eta": "## ETA accuracy", "cost": "## Cost", "scale": "## Scale"}
_KEPT = re.compile(r"^- (.+): kept from an earlier run \(measured (.+?); code (.+)\)$")


def _previous(path: Path) -> dict[str, dict]:
    """What the report already there says per benchmark: summary row, section, and when it was measured.

    `--only` runs some benchmarks; the others keep their rows and sections from here, unchanged.
    """
    try:
        text = path.read_text()
    except OSError:
        return {}
    head, *chunks = text.split("\n## ")
    header = head.splitlines()
    date = next((l[len("- Date: "):] for l in header if l.startswith("- Date: ")), "?")
    mode = next((l[len("- Mode: "):].split(";")[0] for l in header if l.startswith("- Mode: ")), "?")
    code = next((l[len("- Code measured: "):] for l in header if l.startswith("- Code measured: ")), "?")
    kept = {m.group(1): (m.group(2), m.group(3)) for m in map(_KEPT.match, header) if m}
    out = {}
    for key in KEYS:
        row = next((l for l in header if l.startswith(f"| {TITLES[key]} |")), None)
        section = next((("## " + c).rstrip("\n").split("\n") + [""] for c in chunks
                        if ("## " + c).startswith(HEADINGS[key])), None)
        if row is None or section is None:
            continue
        measured, measured_code = kept.get(TITLES[key], (f"{date}, {mode}", code))
        out[key] = {"row": row, "section": section, "measured": measured, "code": measured_code}
    return out


def write(results: dict, quick: bool, elapsed_s: float, path: Path = REPORT) -> Path:
    previous = {k: v for k, v in _previous(path).items() if k not in results}
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m bench`); figures from the run below, baselines measured in the "
        "same run. Benchmarks never fail the build.",
        "",
        f"- Date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Machine: {_machine()}",
        f"- Mode: {'quick (smaller sizes)' if quick else 'full'}; whole run {elapsed_s:.0f} s",
        f"- Code measured: {_code_version()}",
        "- The poll service is built by functions.wiring.build, as main.py builds it. Figures on a shared "
        "2-core machine move with whatever else runs on it (the emulators' JVMs compete with the poller).",
    ]
    lines += [f"- {TITLES[key]}: kept from an earlier run (measured {previous[key]['measured']}; "
              f"code {previous[key]['code']})" for key in KEYS if key in previous]
    lines += [
        "",
        "| benchmark | goal | result |",
        "|---|---|---|",
    ]
    summary = {
        "p1": lambda r: " / ".join(f"{x.get('path', 'all changes')} c={x['concurrency']}: {x['ops_per_s']:.0f} "
                                    f"ops/s, {x['ratio']:.1f}×, {x['utilisation']:.0%}, "
                                    f"{x.get('cpu_ms_per_get')} ms CPU/GET, "
                                    f"{(x.get('per_poll_own') or x.get('per_poll') or {}).get('writes')} own "
                                    f"writes/poll → {x['verdict']}"
                                    for x in r["runs"]),
        "p2": lambda r: " / ".join(
            f"{w['name'].split(' (')[0]}: " + "; ".join(
                f"{row['strategy'].split(' (')[0].replace('lrowatch ', '')} {row['verdict']}"
                for row in w["rows"] if row["verdict"]) for w in r["workloads"]) + _p2_seeds(r),
        "p3": lambda r: (f"growth {r['growth']:.2f}×, peak {max(x['peak_rss_mb'] for x in r['sizes']):.0f} MB → "
                         f"{r['verdict']}") if "growth" in r else r["verdict"],
        "cold": lambda r: f"{r['ratio']:.2f}×, no network: {r['no_network']} → {r['verdict']}",
        "eta": _eta_summary,
        "cost": lambda r: (f"lrowatch ${r['lrowatch_total']:.3f} (+ ${r['fixed_poll_month']:.0f}/month of poll runs) · "
                           f"Workflows connector ${r['workflows_total']:.3f} · api-core in a VM "
                           f"${r['api_core_total']:.3f}"),
        "scale": lambda r: (f"1 process {r['runs'][0]['ops_per_s']} ops/s, 2 shard processes "
                            f"{r['runs'][1]['ops_per_s']} ops/s ({r['gain']:.2f}×)"),
        "cadence": lambda r: (f"p50 {_f(r['delay_p50_s'], 3)} s, p95 {_f(r['delay_p95_s'], 3)} s, max "
                              f"{_f(r['delay_max_s'], 3)} s; peak {r['peak_in_flight']}/{r['concurrency']} GETs "
                              f"in flight → {r['verdict']}"),
    }
    for key in KEYS:
        if key in results:
            r = results[key]
            text = f"error: {r['error']}" if "error" in r else summary[key](r)
            lines.append(f"| {TITLES[key]} | {r.get('goal', '')} | {text} |")
        elif key in previous:
            lines.append(previous[key]["row"])
    lines.append("")
    sections = {"p1": p1_section, "p2": p2_section, "p3": p3_section, "cold": cold_section,
                "cadence": cadence_section, "eta": eta_section, "cost": cost_section, "scale": scale_section}
    for key in KEYS:
        if key in results and "error" not in results[key]:
            lines += sections[key](results[key])
        elif key in results:
            lines += [f"## {TITLES[key]}", "", f"Failed to run: `{results[key]['error']}`", ""]
        elif key in previous:
            lines += previous[key]["section"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path
