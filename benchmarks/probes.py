"""3. Probe overhead: for every phenomenon at its full size and default probe
cadence, the wall time of a run with probes over the same run without.

A full run takes minutes, so each arm's run time is composed from measured
parts: steps x (median time of a training step) + probe steps x (median time
of one probe step as the runner does it: every probe, the host copy and the
store transaction). Step and probe are timed interleaved on the same trainer."""

from __future__ import annotations

import tempfile

from benchmarks.timing import interleaved
from learnscope import registry
from learnscope.runner import phenomenon_arms
from learnscope.store import Store
from learnscope.train.trainer import Trainer


def arm_overhead(trainer: Trainer, store: Store, run_id: str) -> dict:
    recipe = trainer.recipe
    seeds = trainer.seeds

    def probe_step():
        metrics = trainer.measure()
        host = {k: v.detach().cpu().tolist() for k, v in metrics.items()}
        store.write_metrics(run_id, trainer.step, seeds, host)

    for _ in range(3):  # leave initialization: steady-state steps
        trainer.train_step()
    times = interleaved({"step": trainer.train_step, "probe": probe_step}, repeats=5, warmup=1, target_seconds=0.2)
    probes = trainer.probe_count()
    train = recipe.steps * times["step"]
    probing = probes * times["probe"]
    return {"steps": recipe.steps, "probe_steps": probes, "step_s": times["step"], "probe_s": times["probe"],
            "ratio": (train + probing) / train}


def run(names=None, log=print) -> dict:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp)
        for name in names or registry.phenomena.names():
            _, arms = phenomenon_arms(name, quick=False)
            per_arm = {}
            for arm, spec in arms.items():
                run_id = f"bench-{name}-{arm}"
                store.create_run(run_id, name, spec.stored_spec(), spec.experiment.seed_list)
                per_arm[arm] = arm_overhead(Trainer(spec.experiment), store, run_id)
            train = sum(a["steps"] * a["step_s"] for a in per_arm.values())
            total = sum(a["steps"] * a["step_s"] + a["probe_steps"] * a["probe_s"] for a in per_arm.values())
            results[name] = {"ratio": total / train, "arms": per_arm}
            log(f"  {name}: with probes / without = {total / train:.3f}  "
                + ", ".join(f"{arm}: {a['probe_steps']} probes of {a['probe_s'] * 1e3:.1f} ms over "
                            f"{a['steps']} steps of {a['step_s'] * 1e3:.2f} ms" for arm, a in per_arm.items()))
        store.close()
    return results
