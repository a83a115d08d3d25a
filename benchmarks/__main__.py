"""python -m benchmarks [--json FILE] [--only ensemble,probes,store,catalog,torch_module,sweep,whole]

Prints each section as it is measured, then one summary table with the
issue's bars; with --json, also writes every figure as one JSON object."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from benchmarks import catalog, ensemble, probes, store, sweep, torch_module, whole

SECTIONS = ("ensemble", "probes", "store", "catalog", "torch_module", "sweep", "whole")


def summary(results: dict) -> list[tuple[str, str, str]]:
    """(figure, measured, bar) rows."""
    rows = []
    if "ensemble" in results:
        peak = results["ensemble"]["peak_gflops"]
        rows.append(("matmul peak (2048x2048 fp32)", f"{peak:.0f} GFLOP/s", ""))
        for config in results["ensemble"]["configs"]:
            by_s = {r["seeds"]: r for r in config["rows"]}
            one = by_s[1]["ensemble_s"]
            name = config["name"]
            for s, r in by_s.items():
                rows.append((f"{name}: S={s} step (ensemble / {s} learnscope runs / {s} plain runs)",
                             f"{r['ensemble_s'] * 1e3:.2f} / {r['sequential_learnscope_s'] * 1e3:.2f} / "
                             f"{r['sequential_plain_s'] * 1e3:.2f} ms", ""))
            if 16 in by_s:
                rows.append((f"{name}: 16 plain runs / 16-seed ensemble",
                             f"{by_s[16]['sequential_plain_s'] / by_s[16]['ensemble_s']:.1f}x",
                             ">= 8x" if name.startswith("plain classifier") else ""))
                rows.append((f"{name}: 16-seed ensemble / 1 seed", f"{by_s[16]['ensemble_s'] / one:.2f}x",
                             "<= 2x" if name.startswith("plain classifier") else ""))
            if 64 in by_s:
                rows.append((f"{name}: 64-seed ensemble / 1 seed", f"{by_s[64]['ensemble_s'] / one:.2f}x",
                             "<= 6x" if name.startswith("plain classifier") else ""))
            shares = [r["ensemble_gflops"] / peak for r in config["rows"]]
            rows.append((f"{name}: training GFLOP/s / peak, S={min(by_s)}..{max(by_s)}",
                         f"{min(shares):.0%} to {max(shares):.0%}", ">= 60% if compute-bound"))
    if "probes" in results:
        for name, r in results["probes"].items():
            rows.append((f"probe overhead, {name} (full size, default cadence)", f"{r['ratio']:.3f}x", "<= 1.10x"))
    if "store" in results:
        r = results["store"]
        rows.append(("store writes / raw executemany", f"{r['store_rows_per_s']:,.0f} / {r['raw_rows_per_s']:,.0f} "
                     f"rows/s = {r['ratio']:.2f}", ">= 0.8"))
        rows.append((f"read {r['rows']:,} rows into pandas", f"{r['read_s']:.2f} s", ""))
    if "catalog" in results:
        r = results["catalog"]
        rows.append(("learnscope verify --all --quick", f"{r['seconds']:.0f} s (exit {r['exit_code']})", "<= 300 s"))
    if "torch_module" in results:
        r = results["torch_module"]
        rows.append((f"plain classifier: S={r['seeds']} step, torch-module / built-in mlp",
                     f"{r['ratio']:.2f}x ({r['torch_module_s'] * 1e3:.2f} / {r['builtin_s'] * 1e3:.2f} ms)", "<= 1.5x"))
    if "sweep" in results:
        r = results["sweep"]
        rows.append((f"{r['trials']}-trial sweep, whole command: ray ({r['workers']} workers) / local",
                     f"{r['ratio']:.2f}x ({r['ray_s']:.1f} / {r['local_s']:.1f} s)", "reported, not a bar"))
    if "whole" in results:
        r = results["whole"]
        t = r["seconds"]
        where = f"{r['seeds']} seeds x {r['steps']} steps"
        rows.append((f"whole process, {where}: plain PyTorch loop / learnscope run",
                     f"{r['plain_over_learnscope']:.1f}x ({t['plain PyTorch loop']:.1f} / {t['learnscope run']:.1f} s)",
                     ">= 5x"))
        if "jax_over_learnscope" in r:
            rows.append((f"whole process, {where}: JAX jit(vmap) + lax.scan / learnscope run",
                         f"{r['jax_over_learnscope']:.2f}x ({t['JAX jit(vmap) + lax.scan']:.1f} / "
                         f"{t['learnscope run']:.1f} s)", "> 1x"))
        else:
            rows.append(("whole process: JAX", r["note"], "> 1x"))
        rows.append(("learnscope --help / python -c 'import torch'",
                     f"{r['help_over_import_torch']:.2f} ({t['learnscope --help']:.2f} / "
                     f"{t['import torch']:.2f} s)", "<= 0.25"))
        rows.append(("learnscope list; a 1-step run", f"{t['learnscope list']:.2f} s; {t['learnscope run, 1 step']:.2f} s",
                     ""))
        inside = r["inside"]
        rows.append(("learnscope run: step in the command / train_step alone",
                     f"{r['command_step_over_alone']:.2f} ({inside['step in the command'] * 1e3:.3f} / "
                     f"{inside['train_step alone'] * 1e3:.3f} ms; the loop with probes "
                     f"{inside['loop per step'] * 1e3:.3f} ms per step)", "<= 1 (as fast)"))
        rows.append(("learnscope run: last step to the printed report path", f"{inside['last step to report']:.2f} s",
                     "reported"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--json", metavar="FILE", help="also write every figure to FILE as one JSON object")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {SECTIONS}")
    args = parser.parse_args()
    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    results: dict = {"machine": {"cpu": platform.processor() or platform.machine(), "threads": threads,
                                 "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M")}}
    modules = {"ensemble": ensemble, "probes": probes, "store": store, "catalog": catalog, "torch_module": torch_module,
               "sweep": sweep, "whole": whole}
    for section in args.only.split(","):
        print(f"{section}:", flush=True)
        start = time.perf_counter()
        results[section] = modules[section].run(log=lambda line: print(line, flush=True))
        print(f"  ({time.perf_counter() - start:.0f} s)", flush=True)
    rows = summary(results)
    width = max(len(r[0]) for r in rows)
    print()
    print(f"{'figure'.ljust(width)}  {'measured':<40}  bar")
    for figure, measured, bar in rows:
        print(f"{figure.ljust(width)}  {measured:<40}  {bar}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
