"""A Rich progress bar for training: steps, seeds, ETA, the headline metric."""

from __future__ import annotations

import math
import time
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class TrainingProgress:
    """Callbacks for the trainer; a no-op when disabled."""

    def __init__(self, console: Console | None = None, enabled: bool = True):
        self.console = console or Console(stderr=True)
        self.enabled = enabled
        self._progress: Progress | None = None

    @contextmanager
    def bar(self, description: str, total: int, seeds: int, headline: str, start: int = 0):
        if not self.enabled:
            yield _Silent()
            return
        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("steps · {task.fields[seeds]} seeds"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[metric]}"),
            console=self.console,
            transient=False,
        )
        with progress:
            task = progress.add_task(description, total=total, completed=start, seeds=seeds, metric="")
            yield _Bar(progress, task, headline)


class _Silent:
    def step(self, step: int) -> None:
        pass

    def probe(self, step: int, metrics) -> None:
        pass


class _Bar:
    def __init__(self, progress: Progress, task, headline: str):
        self.progress, self.task, self.headline = progress, task, headline
        self._last = 0.0

    def step(self, step: int) -> None:
        now = time.perf_counter()
        if now - self._last > 0.1:  # the bar refreshes ~10x a second; updating more often is wasted work
            self._last = now
            self.progress.update(self.task, completed=step)

    def probe(self, step: int, metrics) -> None:
        self.progress.update(self.task, completed=step)
        values = metrics.get(self.headline)
        if values is not None:
            finite = [float(v) for v in values if math.isfinite(float(v))]
            if finite:
                mean = sum(finite) / len(finite)
                self.progress.update(self.task, metric=f"{self.headline} {mean:.3f}")
