"""Rehearsal strategies for continual learning: keep a few examples of what
was learned and use them again.

- `replay`, experience replay with a reservoir buffer (Chaudhry et al. 2019,
  "On Tiny Episodic Memories in Continual Learning"; reservoir sampling,
  Vitter 1985): every update's batch is joined by `replay_batch` examples
  drawn from a buffer that holds, per seed, a uniform sample of every
  training example the seed has been given so far.
- `power-law-rehearsal` (after "Catastrophic Interference is Mitigated in
  Naturalistic Power-Law Learning Environments"): an episodic memory per
  experience; every update rehearses ONE earlier experience, chosen with a
  probability that falls as a power law of the time since it was last
  trained or rehearsed, as tasks recur in naturalistic environments. The
  design, precisely:

  * memory: when an experience's block ends for the first time,
    `memory_per_experience` of its training examples are drawn per seed,
    uniformly without replacement, from a generator derived from (seed,
    "power-law", step), and kept for the rest of the run;
  * recency: t_j is the last update that trained on experience j (its
    block) or rehearsed it; at update t, experience j has gone
    u_j = t − t_j − 1 updates unseen;
  * choice: every update, once some earlier experience is in memory, each
    seed draws one experience j among those in memory other than the
    current block's, with probability ∝ (u_j + 1)^(−exponent), from its own
    generator derived from (seed, "power-law", step), so seeds are
    independent runs of the same environment;
  * rehearsal: `replay_batch` examples of j's memory (uniform, without
    replacement when there are enough) join the update's batch, and t_j ← t.

  Recently met experiences thus come back most often, and a rehearsal makes
  its experience recent again: rehearsals cluster in time on few
  experiences, with long gaps for the others. The choice is sticky: with
  exponent 1, the experience rehearsed at the last update weighs 1 against
  1/(u + 1) for one unseen for u updates, so an experience left aside for
  long is seldom picked again. `exponent` 0 gives uniform rehearsal over
  earlier experiences, the non-power-law control. The paper's environment
  itself, whole blocks revisiting earlier experiences on a power-law
  schedule, is the stream's `schedule: power-law` (tasks/streams.py); the
  two compose.
- `agem`, Averaged Gradient Episodic Memory (Chaudhry, Ranzato, Rohrbach &
  Elhoseiny 2019, "Efficient Lifelong Learning with A-GEM"): the same
  episodic memory (drawn from (seed, "agem", step)); every update, the
  task-loss gradient g_ref of `reference_batch` examples drawn from the
  whole memory; where the update's gradient g conflicts with it
  (g·g_ref < 0), g is projected: g ← g − (g·g_ref / g_ref·g_ref)·g_ref,
  dot products taken per seed over all its parameters.

Every draw comes from per-seed generators derived from (seed, strategy,
step), and the buffers are tensors in the checkpoint, so a resumed run
draws and holds exactly what the uninterrupted one would. Every seed adds
the same number of examples to its batch (buffers fill at the same rate
across seeds), so batches stay stacked [S, B, ...].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pydantic import Field

from learnscope import registry
from learnscope.errors import SpecError
from learnscope.probes.weights import seed_sq_norm
from learnscope.seeding import generator
from learnscope.tasks.base import Block
from learnscope.train.hooks import Intervention, InterventionState, StreamBudget, experience_ended


def draw_rows(n: int, k: int, gen: torch.Generator) -> torch.Tensor:
    """k uniform row indices out of n: without replacement (the head of a random
    permutation) when k ≤ n, else with."""
    if k <= n:
        return torch.randperm(n, generator=gen)[:k]
    return torch.randint(n, (k,), generator=gen)


def rows_of(stacked: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Per seed, the given rows: stacked [S, n, ...], rows [S, k] -> [S, k, ...]."""
    members = torch.arange(stacked.shape[0], device=stacked.device).unsqueeze(1)
    return stacked[members, rows.to(stacked.device)]


def seed_generators(seeds: Sequence[int], strategy: str, step: int) -> list[torch.Generator]:
    return [generator(seed, strategy, step) for seed in seeds]


def joined(x: torch.Tensor, y: torch.Tensor, extra: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """The batch with rehearsed examples appended to every seed's."""
    return torch.cat([x, extra[0].to(x.dtype)], 1), torch.cat([y, extra[1].to(y.dtype)], 1)


# ---------------------------------------------------------------- replay


class Reservoir:
    """A reservoir sample (Vitter's algorithm R) of `size` examples per seed:
    after n examples were offered, each of them is held with probability
    min(1, size/n), and min(n, size) slots are filled. Offering a batch is
    offering its examples one by one: example i (the n-th overall) takes
    slot n−1 while the buffer fills, later slot j ~ U{0..n−1} if j < size;
    when several examples of a batch pick one slot, the last one keeps it."""

    def __init__(self, size: int, members: int, x_like: torch.Tensor, y_like: torch.Tensor):
        self.size = size
        self.x = torch.zeros(members, size, *x_like.shape[2:], dtype=x_like.dtype, device=x_like.device)
        self.y = torch.zeros(members, size, *y_like.shape[2:], dtype=y_like.dtype, device=y_like.device)
        self.offered = 0

    @property
    def filled(self) -> int:
        return min(self.offered, self.size)

    def sample(self, k: int, gens: list[torch.Generator]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.stack([draw_rows(self.filled, k, gen) for gen in gens])
        return rows_of(self.x[:, : self.filled], rows), rows_of(self.y[:, : self.filled], rows)

    def offer(self, x: torch.Tensor, y: torch.Tensor, gens: list[torch.Generator]) -> None:
        members, batch = y.shape[:2]
        count = self.offered + 1 + torch.arange(batch, dtype=torch.float64)  # n of each example
        uniform = torch.stack([torch.rand(batch, generator=gen, dtype=torch.float64) for gen in gens])
        slot = torch.minimum((uniform * count).floor(), count - 1)  # U{0..n-1}
        slot = torch.where(count <= self.size, count - 1, slot).long()
        # the last example choosing a slot wins; discarded ones go to a spare slot past the end
        flat = torch.where(slot < self.size, slot + torch.arange(members).unsqueeze(1) * self.size,
                           members * self.size)
        position = torch.arange(batch).expand(members, batch)
        winner = torch.full((members * self.size + 1,), -1, dtype=torch.long)
        winner.scatter_reduce_(0, flat.reshape(-1), position.reshape(-1), "amax")
        winner = winner[:-1].view(members, self.size)
        held = winner >= 0
        seed_of = torch.arange(members).unsqueeze(1).expand_as(winner)
        self.x[held.to(self.x.device)] = x[seed_of[held], winner[held]].to(self.x.dtype)
        self.y[held.to(self.y.device)] = y[seed_of[held], winner[held]].to(self.y.dtype)
        self.offered += batch

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"x": self.x, "y": self.y, "offered": torch.tensor(self.offered)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.x, self.y = state["x"].clone().to(self.x.device), state["y"].clone().to(self.y.device)
        self.offered = int(state["offered"])


@registry.interventions.register("replay")
class Replay(Intervention):
    """Experience replay: each update's batch plus `replay_batch` examples
    drawn (per seed, uniformly, without replacement when the buffer holds
    enough) from a reservoir buffer of `buffer_size` examples per seed. The
    buffer is sampled before the update's own examples are offered to it;
    every example the update is given (after interventions listed earlier
    changed the batch) is offered. Works on any task, stream or not."""

    buffer_size: int = Field(200, ge=1, le=10_000_000, description="examples the buffer holds per seed")
    replay_batch: int = Field(32, ge=1, le=1_000_000, description="buffer examples added to each update's batch")

    @classmethod
    def stream_strategy(cls, budget: StreamBudget) -> dict:
        # the same memory the episodic strategies end with
        return {"buffer_size": budget.memory_per_experience * budget.experiences,
                "replay_batch": budget.rehearsed_per_update}

    def build(self, trainer) -> InterventionState:
        return ReplayState(self, Reservoir(self.buffer_size, trainer.members, trainer.train_x, trainer.train_y))


class ReplayState(InterventionState):
    parameter_copies = 0  # its buffer is built at once

    def __init__(self, spec: Replay, reservoir: Reservoir):
        self.extra_examples = spec.replay_batch
        self.spec = spec
        self.reservoir = reservoir

    def batch(self, trainer, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gens = seed_generators(trainer.seeds, "replay", trainer.step)
        replayed = self.reservoir.sample(self.spec.replay_batch, gens) if self.reservoir.filled else None
        self.reservoir.offer(x, y, gens)
        return joined(x, y, replayed) if replayed is not None else (x, y)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.reservoir.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if state:
            self.reservoir.load_state_dict(state)


# ---------------------------------------------------------------- episodic memory


class EpisodicMemory:
    """`per_experience` training examples of each experience, per seed, drawn
    uniformly without replacement from a generator derived from (seed,
    strategy, step) when the experience's block ends for the first time:
    x [S, E, m, ...], y [S, E, m, ...]; `stored` [E] says which are held."""

    def __init__(self, trainer, per_experience: int, strategy: str, path: str):
        experiences = trainer.info.experiences
        for e in range(experiences):
            if per_experience > (n := trainer.data.size(f"train/{e}")):
                raise SpecError(path, f"{per_experience} exceeds experience {e}'s {n} training examples")
        x, y = trainer.train_x, trainer.train_y
        shape = (trainer.members, experiences, per_experience)
        self.x = torch.zeros(*shape, *x.shape[2:], dtype=x.dtype, device=x.device)
        self.y = torch.zeros(*shape, *y.shape[2:], dtype=y.dtype, device=y.device)
        self.stored = torch.zeros(experiences, dtype=torch.bool)
        self.strategy = strategy

    @property
    def per_experience(self) -> int:
        return self.x.shape[2]

    def on_block(self, trainer, block: Block, previous: Block | None) -> None:
        finished = experience_ended(block, previous)
        if finished is None or self.stored[finished]:
            return
        x, y = trainer.data.splits[f"train/{finished}"]
        gens = seed_generators(trainer.seeds, self.strategy, trainer.step)
        rows = torch.stack([draw_rows(y.shape[1], self.per_experience, gen) for gen in gens])
        self.x[:, finished], self.y[:, finished] = rows_of(x, rows), rows_of(y, rows)
        self.stored[finished] = True

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"memory.x": self.x, "memory.y": self.y, "memory.stored": self.stored}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.x = state["memory.x"].clone().to(self.x.device)
        self.y = state["memory.y"].clone().to(self.y.device)
        self.stored = state["memory.stored"].clone()


# ---------------------------------------------------------------- power-law rehearsal


@registry.interventions.register("power-law-rehearsal")
class PowerLawRehearsal(Intervention):
    """Rehearsal of one earlier experience per update, chosen with probability
    ∝ (updates since it was last trained or rehearsed + 1)^(−exponent); see
    the module docstring for the exact design."""

    memory_per_experience: int = Field(100, ge=1, le=1_000_000, description="examples kept of each experience")
    replay_batch: int = Field(32, ge=1, le=1_000_000, description="rehearsed examples added to each update's batch")
    exponent: float = Field(1.0, ge=0, le=100, description="power-law exponent of the choice (0: uniform)")

    @classmethod
    def stream_strategy(cls, budget: StreamBudget) -> dict:
        return {"memory_per_experience": budget.memory_per_experience, "replay_batch": budget.rehearsed_per_update,
                "exponent": 1.0}

    def build(self, trainer) -> InterventionState:
        self.require_stream(trainer)
        path = f"{self.spec_path(trainer)}.memory_per_experience"
        return PowerLawRehearsalState(self, EpisodicMemory(trainer, self.memory_per_experience, "power-law", path),
                                      trainer.members)


def power_law_choice(last_seen: torch.Tensor, candidates: torch.Tensor, step: int, exponent: float,
                     gens: list[torch.Generator]) -> torch.Tensor:
    """Per seed, one candidate experience j, with probability ∝ (step −
    last_seen[j])^(−exponent) = (updates unseen + 1)^(−exponent):
    last_seen [S, E] (the last update that trained or rehearsed each),
    candidates [E] bool, one generator per seed; returns [S]."""
    age = (step - last_seen).double().clamp(min=1)
    weights = torch.where(candidates, age.pow(-exponent), 0.0)
    return torch.cat([torch.multinomial(w, 1, generator=gen) for w, gen in zip(weights, gens)])


class PowerLawRehearsalState(InterventionState):
    parameter_copies = 0  # its memory is built at once

    def __init__(self, spec: PowerLawRehearsal, memory: EpisodicMemory, members: int):
        self.extra_examples = spec.replay_batch
        self.spec = spec
        self.memory = memory
        self.last_seen = torch.full((members, memory.stored.numel()), -1, dtype=torch.long)

    def on_block(self, trainer, block: Block, previous: Block | None) -> None:
        self.memory.on_block(trainer, block, previous)

    def batch(self, trainer, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        step = trainer.step
        current = trainer.blocks[trainer.sampler.block_index(step)].experience
        self.last_seen[:, current] = step
        candidates = self.memory.stored.clone()
        candidates[current] = False
        if not candidates.any():
            return x, y
        gens = seed_generators(trainer.seeds, "power-law", step)
        chosen = power_law_choice(self.last_seen, candidates, step, self.spec.exponent, gens)
        members = torch.arange(len(gens))
        self.last_seen[members, chosen] = step
        rows = torch.stack([draw_rows(self.memory.per_experience, self.spec.replay_batch, gen) for gen in gens])
        chosen = chosen.to(self.memory.x.device)
        return joined(x, y, (rows_of(self.memory.x[members, chosen], rows),
                             rows_of(self.memory.y[members, chosen], rows)))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {**self.memory.state_dict(), "last_seen": self.last_seen}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if state:
            self.memory.load_state_dict(state)
            self.last_seen = state["last_seen"].clone()


# ---------------------------------------------------------------- A-GEM


@registry.interventions.register("agem")
class AGEM(Intervention):
    """A-GEM: the update's gradient projected, per seed, so that it does not
    increase the loss on a reference batch from the episodic memory."""

    memory_per_experience: int = Field(100, ge=1, le=1_000_000, description="examples kept of each experience")
    reference_batch: int = Field(128, ge=1, le=1_000_000, description="memory examples of the reference gradient")

    @classmethod
    def stream_strategy(cls, budget: StreamBudget) -> dict:
        return {"memory_per_experience": budget.memory_per_experience, "reference_batch": 128}  # >= 100 needed

    def build(self, trainer) -> InterventionState:
        self.require_stream(trainer)
        path = f"{self.spec_path(trainer)}.memory_per_experience"
        return AGEMState(self, EpisodicMemory(trainer, self.memory_per_experience, "agem", path))


def seed_dot(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    """Dot product over all tensors, per seed (the leading axis), in float64: [S]."""
    return sum((x.detach().reshape(x.shape[0], -1).double() * y.detach().reshape(y.shape[0], -1).double()).sum(1)
               for x, y in zip(a, b))


@torch.no_grad()
def project_conflicting(grads: list[torch.Tensor], reference: list[torch.Tensor]) -> None:
    """In place, per seed: where g·g_ref < 0, g ← g − (g·g_ref / g_ref·g_ref)·g_ref."""
    dot = seed_dot(grads, reference)
    coefficient = torch.where(dot < 0, dot / seed_sq_norm(reference), 0.0)
    for g, r in zip(grads, reference):
        g.sub_(coefficient.to(g.dtype).view(-1, *([1] * (g.dim() - 1))) * r)


class AGEMState(InterventionState):
    def __init__(self, spec: AGEM, memory: EpisodicMemory):
        self.spec = spec
        self.memory = memory

    def on_block(self, trainer, block: Block, previous: Block | None) -> None:
        self.memory.on_block(trainer, block, previous)

    def after_backward(self, trainer) -> None:
        stored = self.memory.stored.to(self.memory.x.device)
        if not bool(stored.any()):
            return
        pool_x, pool_y = self.memory.x[:, stored].flatten(1, 2), self.memory.y[:, stored].flatten(1, 2)
        gens = seed_generators(trainer.seeds, "agem", trainer.step)
        rows = torch.stack([draw_rows(pool_y.shape[1], self.spec.reference_batch, gen) for gen in gens])
        reference = trainer.gradients(rows_of(pool_x, rows), rows_of(pool_y, rows))
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in trainer.params]
        project_conflicting(grads, reference)
        for p, g in zip(trainer.params, grads):
            p.grad = g

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.memory.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if state:
            self.memory.load_state_dict(state)
