"""`vrp-sam`: the parser, built from each command group's `register`, and the entry point,
which turns every expected failure into one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import errno
import logging
import sys
import warnings
from collections.abc import Sequence

from vrp_sam_jax.cli import (
    app_commands,
    data_commands,
    model_commands,
    run_commands,
    sam_commands,
)
from vrp_sam_jax.errors import EXPECTED_ERRORS

GROUPS = (model_commands, run_commands, data_commands, sam_commands, app_commands)


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (`vrp-sam CMD: error: ...`, exit status 2)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# A disk that cannot take what a command writes: one line and what to do, exit 2 (files are
# written through a temporary that a failed write removes, so nothing half-written remains).
STORAGE_ERRORS = {
    errno.ENOSPC: "free some space there, or write somewhere else",
    errno.EDQUOT: "the disk quota is used up; free some space, or write somewhere else",
    errno.EROFS: "that file system is read-only; write somewhere else",
    errno.EACCES: "no permission to write there; write somewhere else",
    errno.EPERM: "no permission to write there; write somewhere else",
}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="vrp-sam",
                    description="VRP-SAM (SAM with Visual Reference Prompt) in JAX/Flax")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for group in GROUPS:
        group.register(sub)
    return parser


def config_overrides(parser: argparse.ArgumentParser, extra: list[str]) -> list[str]:
    """`--config.a.b=value` or `--config.a.b value` -> ["--config.a.b=value", ...] (the
    prefix is `config.apply_overrides`'s to strip)."""
    out, i = [], 0
    while i < len(extra):
        item = extra[i]
        if not item.startswith("--config."):
            parser.error(f"unrecognized arguments: {' '.join(extra[i:])}")
        if "=" in item:
            out.append(item)
            i += 1
        elif i + 1 < len(extra):
            out.append(f"{item}={extra[i + 1]}")
            i += 2
        else:
            parser.error(f"{item}: missing value")
    return out


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line's arguments, `--config.*` overrides collected in `overrides`
    (nothing runs: tests check documented commands with it)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "overrides_allowed", False):
        args.overrides = config_overrides(parser, extra)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    _without_closed_loop_noise()
    try:
        if hasattr(args, "compile_cache"):  # the commands that compile the model
            from vrp_sam_jax.runtime import compile_cache

            compile_cache.use(args.compile_cache)
        return args.func(args)
    except EXPECTED_ERRORS as e:
        return _error(str(e))
    except OSError as e:
        if e.errno not in STORAGE_ERRORS:
            raise
        return _error(f"{e.filename or 'writing'}: {e.strerror}; {STORAGE_ERRORS[e.errno]}")


def _error(line: str) -> int:
    """Print the one error line and keep everything after it quiet: the reads and writes the
    error cut short (orbax's, TensorStore's coroutines) are collected later and would each
    print a traceback at exit ("Exception ignored in ..."), or log one from asyncio."""
    sys.unraisablehook = lambda _: None
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    print(f"vrp-sam: error: {line}", file=sys.stderr)
    return 2


def _closed_loop(error: BaseException | None) -> bool:
    return isinstance(error, RuntimeError) and "Event loop is closed" in str(error)


def _without_closed_loop_noise() -> None:
    """When orbax stops a read or write on an error, its event loop closes while TensorStore
    callbacks in other threads still post to it; each prints 'Event loop is closed' (a
    traceback, before or after our error line). Those, and only those, are dropped."""
    if getattr(sys.excepthook, "drops_closed_loops", False):
        return
    excepthook, unraisablehook = sys.excepthook, sys.unraisablehook

    def on_exception(kind, value, traceback):
        if not _closed_loop(value):
            excepthook(kind, value, traceback)

    def on_unraisable(info):
        if not _closed_loop(info.exc_value):
            unraisablehook(info)

    on_exception.drops_closed_loops = True
    sys.excepthook, sys.unraisablehook = on_exception, on_unraisable
    # the coroutines orbax started and dropped are collected with a warning each (we run
    # none of our own)
    warnings.filterwarnings("ignore", r"coroutine '.*' was never awaited", RuntimeWarning)


if __name__ == "__main__":
    sys.exit(main())
