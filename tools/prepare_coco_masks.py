"""Build COCO-20i per-image class masks from the COCO 2014 instance annotations.

    python tools/prepare_coco_masks.py --coco-root /data/COCO2014 [--splits val2014]

The same as `vrp-sam prepare-coco`: see `vrp_sam_jax/data/coco_masks.py` for the mask
definition (non-crowd annotations in annotation order, value = 1-based category index).
Resumable (complete files are skipped) and verified at the end.
"""

from __future__ import annotations

import sys

from vrp_sam_jax.cli import main

if __name__ == "__main__":
    sys.exit(main(["prepare-coco", *sys.argv[1:]]))
