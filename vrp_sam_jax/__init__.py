"""VRP-SAM (SAM with Visual Reference Prompt, CVPR 2024) in JAX/Flax."""

__version__ = "0.1.0"
