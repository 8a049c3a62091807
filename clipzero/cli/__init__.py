"""The ``clipzero`` command: parse, check the request, call the factory and one public function, format.

Exit codes: 0 success; 1 the work failed (an image could not be read, a model could not be loaded); 2 the
request was wrong (bad flags, no labels, an unknown model or template set, a device or precision this machine
lacks, a missing optional extra). Every command checks its request before any model loads.

One module per command group; each has ``add_parsers(commands)`` and ``COMMANDS`` (name -> handler). They share
flags through :mod:`.options` and never import one another.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any, NoReturn

from .. import __version__
from ..errors import ClipzeroError
from . import agent, classify, dedup, export, finetune, index, info, prompts, serve, tag

__all__ = ["build_parser", "main"]

_GROUPS = (classify, info, tag, export, index, dedup, finetune, serve, agent, prompts)
_COMMANDS = {name: handler for group in _GROUPS for name, handler in group.COMMANDS.items()}


class _Parser(argparse.ArgumentParser):
    """argparse with a short error: the mistake and where the help is, not the whole usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n(see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="clipzero", description="Label images with free-text labels, zero-shot.")
    parser.add_argument("--version", action="version", version=f"clipzero {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    for group in _GROUPS:
        group.add_parsers(commands)
    return parser


def _show_warning(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    from ..errors import ClipzeroWarning

    if issubclass(category, ClipzeroWarning):
        sys.stderr.write(f"clipzero: warning: {message}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command not in ("serve", "mcp"):
        # OpenMP threads that spin between parallel regions rather than sleep keep the encoder's threads ready
        # between layers and batches: about 10% more images/s in batch tagging on 2 cores. They also spin while
        # idle, so a long-running server does without. Set before torch starts (nothing above imports it); a
        # value the user set wins.
        os.environ.setdefault("OMP_WAIT_POLICY", "ACTIVE")
    logging.getLogger().setLevel(logging.ERROR)  # open_clip logs progress notes at warning level
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        warnings.simplefilter("always")
        try:
            return _COMMANDS[args.command](args, sys.stdout)
        except ClipzeroError as exc:
            sys.stderr.write(f"clipzero: error: {exc}\n")
            return exc.exit_code
        except BrokenPipeError:  # output piped into `head` and the like
            sys.stdout = open(os.devnull, "w")
            return 0
        except KeyboardInterrupt:
            sys.stderr.write("clipzero: interrupted\n")
            return 130
