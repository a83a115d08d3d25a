"""learnscope's performance benchmarks: `python -m benchmarks` (or `make bench`).

Every figure is taken in the same run and reported as a ratio where it can
be, because these machines are shared and noisy; each timing is the median
of several repeats after a warm-up. Never imported by the test suite."""
