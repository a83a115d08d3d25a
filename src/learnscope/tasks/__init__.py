"""Tasks: data with named splits, generated deterministically per seed.

Every module here is imported by the registry on its first lookup
(learnscope.registry.discover): a new file with a registered component
needs no edit anywhere else."""
