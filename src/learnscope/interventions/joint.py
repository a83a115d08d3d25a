"""Joint training: the upper bound every continual-learning strategy is
measured against.

Instead of one experience at a time, every update draws its batch from all
experiences of the stream from the start (`cumulative: false`), or from
every experience met so far (`cumulative: true`: the "cumulative" or
"offline up to now" baseline, which still meets experiences in the stream's
order but never loses access to old data). With the whole stream in the
pool there is nothing to forget: backward transfer near zero is the
signature of this arm in the catalog's forgetting entries.
"""

from __future__ import annotations

from pydantic import Field

from learnscope import registry
from learnscope.train.hooks import Intervention, InterventionState, StreamBudget


@registry.interventions.register("joint")
class Joint(Intervention):
    cumulative: bool = Field(False, description="pool every experience met so far, instead of all from the start")

    @classmethod
    def stream_strategy(cls, budget: StreamBudget) -> dict:
        return {}  # every experience from the start: the upper bound

    def build(self, trainer) -> InterventionState:
        self.require_stream(trainer)
        # batch order stays a function of (seed, step): the sampler draws from the wider pool
        trainer.sampler.pool_mode = "seen" if self.cumulative else "all"
        return InterventionState()
