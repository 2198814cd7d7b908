import sys

from vrp_sam_jax.cli.entry import main

sys.exit(main())
