import sys

from vrp_sam_jax.cli.vrp_sam import main

sys.exit(main())
