"""The `vrp-sam` command line: a thin layer over the library, one module per group of
commands. Building the parser imports no JAX (`vrp-sam --help` is instant)."""

from vrp_sam_jax.cli.entry import build_parser, main

__all__ = ["build_parser", "main"]
