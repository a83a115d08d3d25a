"""Interventions: named, parameterized changes to training at hook points.

Weight decay is the optimizer's (recipe.weight_decay) and the output scale
alpha is the model's (model.output_scale); both compose with these.

Continual-learning strategies (for streams of experiences): `joint` (the
upper bound), `ewc` and `si` (regularizers), `replay`, `power-law-rehearsal`
and `agem` (rehearsal), `lwf` (distillation).

Unlearning methods (for tasks with forget and retain splits): `finetune`,
`gradient-ascent`, `gradient-difference`, `ga-kl`, `npo`, `relabel`; and
`worst-case-forget-set`, which replaces the forget set by a searched one.

Every module here is imported by the registry on its first lookup
(learnscope.registry.discover): a new file with a registered component
needs no edit anywhere else."""
