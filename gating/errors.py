"""Errors of the gating engine. Each names the strategy (file) and the gate or marker at fault."""

from __future__ import annotations

#: characters of an error message at most: a longer one (a file's 50 MB attribute quoted whole)
#: keeps its start and end, the middle is cut
MAX_MESSAGE = 4000


def _shorten(message: object) -> object:
    if not isinstance(message, str) or len(message) <= MAX_MESSAGE:
        return message
    head, tail = MAX_MESSAGE * 3 // 4, MAX_MESSAGE // 4
    cut = len(message) - head - tail
    return f"{message[:head]} [... {cut:,} characters cut ...] {message[-tail:]}"


class GatingError(ValueError):
    """A strategy cannot be built or applied as written."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(_shorten(a) for a in args))


class StrategyError(GatingError):
    """A strategy file (YAML, Gating-ML, FlowJo workspace) is malformed; the message names where."""


class MissingDimensionError(GatingError, KeyError):
    """A sample lacks a channel or marker that a gate needs."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class AmbiguousMarkerError(MissingDimensionError):
    """A strategy's name matches several channels of a sample (the message lists them)."""


class GatingWarning(UserWarning):
    """The engine did something the user should know about (e.g. no spillover to compensate with)."""
