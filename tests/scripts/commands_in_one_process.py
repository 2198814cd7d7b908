"""Several `vrp-sam` commands in one process, each argument one command line as a JSON list
(`python commands_in_one_process.py '["export", ...]' '["evaluate", ...]'`): one process start
and JAX import for all, and programs compiled once. Stops at the first that fails, with its
exit status."""

import json
import sys

from vrp_sam_jax.cli import main

for argv in sys.argv[1:]:
    status = main(json.loads(argv))
    if status:
        sys.exit(status)
