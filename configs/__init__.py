"""The experiment configs, one complete file each (installed as `vrp_sam_jax.configs`):
`pascal` and `coco` hold the release's settings, `lvis` them on LVIS-92i, `toy` the embedded
demo's."""
