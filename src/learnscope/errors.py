"""Errors a user can act on. The CLI prints them as one line and exits 2."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

# what str.splitlines() breaks at: user text quoted in a message (a key, a name, a path) must not add lines
_LINE_BREAKS = re.compile("[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")


class LearnscopeError(Exception):
    """Bad input or a missing resource, with a message fit for one line.

    Deliberately not a ValueError: pydantic would otherwise swallow it inside
    validators and re-wrap it, losing the message we composed. Line breaks in
    the message (from quoted user text) are escaped, so it stays one line.
    """

    def __init__(self, message: str = ""):
        super().__init__(_LINE_BREAKS.sub(lambda m: repr(m.group())[1:-1], str(message)))


class SpecError(LearnscopeError):
    """An experiment spec that does not validate."""

    def __init__(self, path: str, message: str):
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class NotFoundError(LearnscopeError):
    """A run, phenomenon or file that does not exist."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C while a run trained: the run is marked interrupted in the store,
    and this says how to continue it."""

    def __init__(self, run_id: str, store_dir: object = None):
        self.run_id = run_id
        self.store_dir = store_dir
        where = f" --store {store_dir}" if store_dir is not None else ""
        self.resume = f"learnscope resume {run_id}{where}"
        super().__init__(f"run '{run_id}' is marked interrupted; continue it with: {self.resume}")


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' when a choice is close to `word`, else ''."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def one_of(word: str, choices: Iterable[str]) -> str:
    """'valid: a, b, c (did you mean 'a'?)' — the tail of an unknown-name message."""
    choices = sorted(choices)
    return f"valid: {', '.join(choices)}{did_you_mean(word, choices)}"
