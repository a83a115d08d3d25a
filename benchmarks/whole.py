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
run, and `python -c "import torch"` (the floor of any torch command)."""

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


def _timed(argv: list[str], cwd: str) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} failed: {done.stderr.strip()[-800:]}")
    return seconds


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


def has_jax() -> bool:
    return importlib.util.find_spec("jax") is not None


def run(log=print, repeats: int = 3) -> dict:
    python = sys.executable
    with tempfile.TemporaryDirectory() as work:
        spec = Path(work) / "plain.yaml"
        spec.write_text(yaml.safe_dump(SPEC))
        (Path(work) / "plain_loop.py").write_text(PLAIN)
        (Path(work) / "jax_vmap.py").write_text(JAX)
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
        for k in range(repeats):
            for name, argv in commands.items():
                samples[name].append(_timed(argv(k), work))
            log(f"  round {k + 1}: " + ", ".join(f"{name} {s[-1]:.2f} s" for name, s in samples.items()))
    medians = {name: statistics.median(s) for name, s in samples.items()}
    ours = medians["learnscope run"]
    result = {"seeds": SEEDS, "steps": STEPS, "repeats": repeats, "seconds": medians, "samples": samples,
              "plain_over_learnscope": medians["plain PyTorch loop"] / ours,
              "help_over_import_torch": medians["learnscope --help"] / medians["import torch"],
              "note": note}
    if "JAX jit(vmap) + lax.scan" in medians:
        result["jax_over_learnscope"] = medians["JAX jit(vmap) + lax.scan"] / ours
    for name, seconds in medians.items():
        log(f"  {name}: {seconds:.2f} s (median of {repeats})")
    return result
