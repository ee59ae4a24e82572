"""Helpers shared by the command line's modules: one-line errors, exit statuses."""

from __future__ import annotations

import argparse
import sys


def _error(message: str) -> None:
    print(f"cytowhim: {message}", file=sys.stderr)


def _failed(args: argparse.Namespace, exc: BaseException, status: int = 2) -> int:
    """One line for ``exc`` on stderr (with ``--debug`` its traceback first); ``status``."""
    if getattr(args, "debug", False):
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    _error(" ".join(str(exc).split()) or type(exc).__name__)
    return status
