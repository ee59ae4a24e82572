"""Errors of the gating engine. Each names the strategy (file) and the gate or marker at fault."""

from __future__ import annotations


class GatingError(ValueError):
    """A strategy cannot be built or applied as written."""


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
