"""Errors a user can act on. The CLI prints them as one line and exits 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class LearnscopeError(Exception):
    """Bad input or a missing resource, with a message fit for one line.

    Deliberately not a ValueError: pydantic would otherwise swallow it inside
    validators and re-wrap it, losing the message we composed.
    """


class SpecError(LearnscopeError):
    """An experiment spec that does not validate."""

    def __init__(self, path: str, message: str):
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class NotFoundError(LearnscopeError):
    """A run, phenomenon or file that does not exist."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' when a choice is close to `word`, else ''."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def one_of(word: str, choices: Iterable[str]) -> str:
    """'valid: a, b, c (did you mean 'a'?)' — the tail of an unknown-name message."""
    choices = sorted(choices)
    return f"valid: {', '.join(choices)}{did_you_mean(word, choices)}"
