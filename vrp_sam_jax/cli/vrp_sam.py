"""`vrp-sam`: the parser, built from each command group's `register`, and the entry point,
which turns every expected failure into one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import errno
import sys
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
    """`--config.a.b=value` or `--config.a.b value` -> ["a.b=value", ...]."""
    out, i = [], 0
    while i < len(extra):
        item = extra[i]
        if not item.startswith("--config."):
            parser.error(f"unrecognized arguments: {' '.join(extra[i:])}")
        if "=" in item:
            out.append(item[len("--config."):])
            i += 1
        elif i + 1 < len(extra):
            out.append(f"{item[len('--config.'):]}={extra[i + 1]}")
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
    try:
        if hasattr(args, "compile_cache"):  # the commands that compile the model
            from vrp_sam_jax import compile_cache

            compile_cache.use(args.compile_cache)
        return args.func(args)
    except EXPECTED_ERRORS as e:
        print(f"vrp-sam: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno not in STORAGE_ERRORS:
            raise
        print(f"vrp-sam: error: {e.filename or 'writing'}: {e.strerror}; "
              f"{STORAGE_ERRORS[e.errno]}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
