"""1. Ensemble scaling: time per training step of (a) one S-seed ensemble,
(b) S single-seed learnscope runs one after another, (c) S plain PyTorch
runs one after another; and 2. arithmetic efficiency: counted FLOPs of
forward and backward over time, against the machine's matmul peak."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.configs import CONFIGS, Config
from benchmarks.timing import interleaved, median_time
from learnscope.spec import Experiment
from learnscope.train.passes import PassPlan
from learnscope.train.trainer import Trainer

SEEDS = (1, 4, 16, 64)


def in_turn(steps: list):
    """One step of each of several runs, one after another."""

    def round_():
        for step in steps:
            step()

    return round_


def single_seed_runs(config: Config, seeds: int) -> list:
    return [Trainer(Experiment.model_validate({**config.spec, "seeds": [s]})).train_step for s in range(seeds)]


def counted_flops(step) -> int:
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def plain_step_flops(config: Config) -> int:
    """FLOPs of one training step of the plain PyTorch loop (one seed)."""
    return counted_flops(config.plain(0))


def step_flops(config: Config) -> int:
    """FLOPs of one training step of one seed (forward and backward), counted by
    torch's FlopCounterMode (matrix products) on learnscope's own single-seed
    step, so that work learnscope skips (the final transformer block's unread
    positions) is not counted as done."""
    trainer = config.trainer(1)
    trainer.plan = PassPlan(seeds=1, examples=trainer.sampler.batch_size or trainer.sampler.n)  # one pass
    return counted_flops(trainer.train_step)


def matmul_peak(n: int = 2048) -> float:
    """GFLOP/s of a large fp32 matmul on this machine, now."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    seconds = median_time(lambda: a @ b, repeats=9, warmup=2)
    return 2 * n**3 / seconds / 1e9


def scaling(config: Config, seeds=SEEDS, repeats: int = 5) -> list[dict]:
    """All variants of one configuration, timed interleaved."""
    works = {}
    for s in seeds:
        works[("ensemble", s)] = config.trainer(s).train_step
        works[("learnscope", s)] = in_turn(single_seed_runs(config, s))
        works[("plain", s)] = in_turn([config.plain(k) for k in range(s)])
    times = interleaved(works, repeats=repeats, warmup=1, target_seconds=0.25)
    rows = []
    flops, plain_flops = step_flops(config), plain_step_flops(config)
    for s in seeds:
        rows.append({
            "seeds": s,
            "ensemble_s": times[("ensemble", s)],
            "sequential_learnscope_s": times[("learnscope", s)],
            "sequential_plain_s": times[("plain", s)],
            "ensemble_gflops": s * flops / times[("ensemble", s)] / 1e9,
            "plain_gflops": s * plain_flops / times[("plain", s)] / 1e9,
        })
    return rows


def run(seeds=SEEDS, repeats: int = 5, log=print) -> dict:
    results = {"peak_gflops": matmul_peak(), "configs": []}
    for config in CONFIGS:
        rows = scaling(config, seeds, repeats)
        for r in rows:
            log(f"  {config.name}  S={r['seeds']}: ensemble {r['ensemble_s'] * 1e3:.2f} ms, "
                f"{r['seeds']} learnscope runs {r['sequential_learnscope_s'] * 1e3:.2f} ms, "
                f"{r['seeds']} plain runs {r['sequential_plain_s'] * 1e3:.2f} ms, "
                f"{r['ensemble_gflops']:.1f} GFLOP/s")
        results["configs"].append({"name": config.name, "rows": rows})
    results["peak_gflops_after"] = matmul_peak()
    return results
