"""VRP-SAM (SAM with Visual Reference Prompt, CVPR 2024) in JAX/Flax.

    model = vrp_sam_jax.load("runs/pascal_f0")   # a work directory, converted dir, best_model.pt

Importing the package imports no JAX; `load` and `export` import `model_io` when first used.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    if name in ("load", "export"):
        from vrp_sam_jax import model_io

        return getattr(model_io, name)
    raise AttributeError(f"module 'vrp_sam_jax' has no attribute {name!r}")
