"""Training: the seed-ensemble trainer, data sampling, optimizers, hooks."""
