"""Failpoints for the crash tests: with LEARNSCOPE_FAULT=NAME:N in the
environment, the process kills itself (SIGKILL, no cleanup, as a power cut
or the OOM killer would) the N-th time it reaches the point NAME. Unset,
`point` is one comparison. The points sit where a crash could leave work
half done: inside a training step, inside a metric transaction, while a
checkpoint file is written, between its rename and its record, between arms, between a sweep's trials.
"""

from __future__ import annotations

import os
import signal

ENV_VAR = "LEARNSCOPE_FAULT"


def _parse(text: str | None) -> tuple[str, int] | None:
    if not text:
        return None
    name, _, count = text.partition(":")
    return name, int(count or 1)


_target = _parse(os.environ.get(ENV_VAR))
_reached: dict[str, int] = {}


def point(name: str) -> None:
    if _target is None or _target[0] != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] == _target[1]:
        os.kill(os.getpid(), signal.SIGKILL)
