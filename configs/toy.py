"""The embedded toy benchmark with a tiny SAM and backbone (random weights): what
`vrp-sam demo` trains. Runs on a 2-core CPU in minutes.

    vrp-sam train --config configs/toy.py --workdir runs/toy
"""

from vrp_sam_jax.training.config import toy_config


def get_config():
    return toy_config()
