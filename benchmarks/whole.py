"""7. The whole process: what a researcher waits for is the command, not a step.
The plain classifier spec (16 seeds x 3000 steps, batch 128) trained three
ways, each a fresh process timed from start to exit, round after round
(three rounds, medians):

- `learnscope run plain.yaml` (summary table and report included: what a
  user gets);
- a plain PyTorch script of the same work, the 16 seeds one after another
  (nn.Module, torch.optim.SGD, DataLoader, the same data);
- a JAX script of the same work called once: `jit(vmap(train))` with
  `lax.scan` over the steps, compilation included (the `bench` extra;
  skipped with a note where JAX is not installed).

Also timed as processes: `learnscope --help`, `learnscope list`, a 1-step
run, and `python -c "import torch"` (the floor of any torch command).

And inside the `learnscope run` process: the time from the end of the
last training step to the printed report path (the summary table, the
statistics, the figures and the page), and the time per training step in
the command, against `Trainer.train_step` timed alone on the same trainer
right after (the command must step as fast as the benchmark does)."""

from __future__ import annotations

import importlib.util
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import yaml

from benchmarks.configs import CLASSIFIER

SEEDS, STEPS, BATCH = 16, 3000, 128
SPEC = {**CLASSIFIER, "recipe": {**CLASSIFIER["recipe"], "steps": STEPS}, "seeds": SEEDS}

# The plain and JAX scripts load the data learnscope trains on from a file written before the
# timing (as a researcher's script loads a dataset); learnscope run builds it in its process.
_DATA = """
import numpy as np
loaded = np.load("data.npz")
def data(seed):
    return loaded["x"][seed], loaded["y"][seed]
"""

PLAIN = _DATA + textwrap.dedent(f"""
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    for seed in range({SEEDS}):
        torch.manual_seed(seed)
        x, y = (torch.from_numpy(a) for a in data(seed))
        model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        loader = DataLoader(TensorDataset(x, y), batch_size={BATCH}, shuffle=True, drop_last=True)
        step = 0
        while step < {STEPS}:
            for xb, yb in loader:
                loss = F.cross_entropy(model(xb), yb)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                step += 1
                if step == {STEPS}:
                    break
        with torch.no_grad():
            accuracy = (model(x).argmax(1) == y).float().mean().item()
        print(seed, accuracy)
""")

JAX = _DATA + textwrap.dedent(f"""
    import numpy as np
    import jax
    import jax.numpy as jnp

    x, y = jnp.asarray(loaded["x"]), jnp.asarray(loaded["y"])
    n = x.shape[1]
    sizes = [32, 64, 64, 10]

    def init(key):
        params = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            key, wk, bk = jax.random.split(key, 3)
            bound = 1 / np.sqrt(fan_in)
            params.append((jax.random.uniform(wk, (fan_in, fan_out), minval=-bound, maxval=bound),
                           jax.random.uniform(bk, (fan_out,), minval=-bound, maxval=bound)))
        return params

    def forward(params, xb):
        for w, b in params[:-1]:
            xb = jax.nn.relu(xb @ w + b)
        w, b = params[-1]
        return xb @ w + b

    def loss(params, xb, yb):
        logits = forward(params, xb)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), yb[:, None], 1))

    per_epoch = n // {BATCH}  # batches of an epoch (drop_last), each epoch a fresh permutation, as DataLoader(shuffle=True)
    epochs = -(-{STEPS} // per_epoch)

    def train(key, x, y):
        key, init_key = jax.random.split(key)
        params = init(init_key)
        orders = jax.vmap(lambda k: jax.random.permutation(k, n))(jax.random.split(key, epochs))
        def step(params, i):
            idx = jax.lax.dynamic_slice(orders[i // per_epoch], ((i % per_epoch) * {BATCH},), ({BATCH},))
            grads = jax.grad(loss)(params, x[idx], y[idx])
            return jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, grads), None
        params, _ = jax.lax.scan(step, params, jnp.arange({STEPS}))
        return jnp.mean(jnp.argmax(forward(params, x), 1) == y)

    keys = jax.random.split(jax.random.PRNGKey(0), {SEEDS})
    accuracy = jax.jit(jax.vmap(train))(keys, x, y)
    print(np.asarray(accuracy))
""")


# `learnscope run` with clocks added from outside (Trainer.train_step wrapped): every step's start
# and end, and the process's end. Prints to stderr: the time from the last step's end to the end
# (the conclusion), the mean step, and the loop's time per step (steps plus probes, checkpoints
# and progress between them).
CLOCKED = textwrap.dedent("""
    import sys, time
    from learnscope.cli import main
    from learnscope.train.trainer import Trainer

    step = Trainer.train_step
    starts, ends = [], []

    def clocked(self):
        starts.append(time.perf_counter())
        step(self)
        ends.append(time.perf_counter())

    Trainer.train_step = clocked
    code = main(sys.argv[1:])
    done = time.perf_counter()
    steps = sum(e - s for s, e in zip(starts, ends)) / len(ends)
    loop = (ends[-1] - starts[0]) / len(ends)
    print(f"CLOCK {done - ends[-1]} {steps} {loop}", file=sys.stderr)
    sys.exit(code)
""")

# The benchmark's own measure: the same spec's Trainer, train_step timed alone after a warm-up.
ALONE = textwrap.dedent(f"""
    import sys, time, yaml
    from learnscope.spec import Experiment
    from learnscope.train.trainer import Trainer

    trainer = Trainer(Experiment.model_validate(yaml.safe_load(open("plain.yaml"))))
    for _ in range(100):
        trainer.train_step()
    trainer.step = 0
    start = time.perf_counter()
    for _ in range({STEPS}):
        trainer.train_step()
    print(f"CLOCK {{(time.perf_counter() - start) / {STEPS}}}", file=sys.stderr)
""")


def _clock(stderr: str) -> list[float]:
    line = next(line for line in stderr.splitlines() if line.startswith("CLOCK "))
    return [float(value) for value in line.split()[1:]]


def _timed(argv: list[str], cwd: str) -> tuple[float, str]:
    """(wall seconds, stderr) of a fresh process."""
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} failed: {done.stderr.strip()[-800:]}")
    return seconds, done.stderr


def write_data(path: Path) -> None:
    """Every seed's training split of the spec's task, as learnscope builds it: x [S, n, 32], y [S, n]."""
    import numpy as np

    from learnscope.spec import Experiment

    task = Experiment.model_validate({**SPEC, "seeds": 1}).task
    xs, ys = [], []
    for seed in range(SEEDS):
        built = task.build(seed)
        train = built.splits["train"]
        xs.append(built.inputs[train].numpy())
        ys.append(built.targets[train].numpy())
    np.savez(path, x=np.stack(xs), y=np.stack(ys))


# Clocks inside the learnscope run process (CLOCKED) and the train_step of the same spec alone (ALONE).
INSIDE = ("last step to report", "step in the command", "loop per step", "train_step alone")


def has_jax() -> bool:
    return importlib.util.find_spec("jax") is not None


def run(log=print, repeats: int = 3) -> dict:
    python = sys.executable
    with tempfile.TemporaryDirectory() as work:
        spec = Path(work) / "plain.yaml"
        spec.write_text(yaml.safe_dump(SPEC))
        (Path(work) / "plain_loop.py").write_text(PLAIN)
        (Path(work) / "jax_vmap.py").write_text(JAX)
        (Path(work) / "clocked.py").write_text(CLOCKED)
        (Path(work) / "alone.py").write_text(ALONE)
        write_data(Path(work) / "data.npz")
        ls = [python, "-m", "learnscope"]
        commands = {
            "learnscope run": lambda k: ls + ["run", str(spec), "--store", f"{work}/s{k}"],
            "plain PyTorch loop": lambda k: [python, "plain_loop.py"],
            "JAX jit(vmap) + lax.scan": lambda k: [python, "jax_vmap.py"],
            "learnscope --help": lambda k: ls + ["--help"],
            "learnscope list": lambda k: ls + ["list"],
            "learnscope run, 1 step": lambda k: ls + ["run", str(spec), "--store", f"{work}/one{k}",
                                                      "--set", "recipe.steps=1"],
            "import torch": lambda k: [python, "-c", "import torch"],
        }
        note = None
        if not has_jax():
            del commands["JAX jit(vmap) + lax.scan"]
            note = "JAX is not installed (pip install -e '.[bench]'): its row is skipped"
            log(f"  {note}")
        samples: dict[str, list[float]] = {name: [] for name in commands}
        clocks: dict[str, list[float]] = {name: [] for name in INSIDE}
        for k in range(repeats):
            for name, argv in commands.items():
                samples[name].append(_timed(argv(k), work)[0])
            conclude, in_command, loop = _clock(_timed([python, "clocked.py", "run", str(spec), "--store",
                                                        f"{work}/c{k}"], work)[1])
            alone = _clock(_timed([python, "alone.py"], work)[1])[0]
            for name, value in zip(INSIDE, (conclude, in_command, loop, alone)):
                clocks[name].append(value)
            log(f"  round {k + 1}: " + ", ".join(f"{name} {s[-1]:.2f} s" for name, s in samples.items())
                + f"; last step to report {conclude:.2f} s, step in the command {in_command * 1e3:.3f} ms "
                f"(loop {loop * 1e3:.3f} ms), train_step alone {alone * 1e3:.3f} ms")
    medians = {name: statistics.median(s) for name, s in samples.items()}
    inside = {name: statistics.median(s) for name, s in clocks.items()}
    ours = medians["learnscope run"]
    result = {"seeds": SEEDS, "steps": STEPS, "repeats": repeats, "seconds": medians, "samples": samples,
              "plain_over_learnscope": medians["plain PyTorch loop"] / ours,
              "help_over_import_torch": medians["learnscope --help"] / medians["import torch"],
              "inside": inside, "inside_samples": clocks,
              "command_step_over_alone": inside["step in the command"] / inside["train_step alone"],
              "note": note}
    if "JAX jit(vmap) + lax.scan" in medians:
        result["jax_over_learnscope"] = medians["JAX jit(vmap) + lax.scan"] / ours
    for name, seconds in medians.items():
        log(f"  {name}: {seconds:.2f} s (median of {repeats})")
    log(f"  last step to the printed report path: {inside['last step to report']:.2f} s; step in the command "
        f"{inside['step in the command'] * 1e3:.3f} ms (the loop {inside['loop per step'] * 1e3:.3f} ms per step), "
        f"train_step alone {inside['train_step alone'] * 1e3:.3f} ms (medians of {repeats})")
    return result
