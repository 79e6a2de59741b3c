"""python -m fusedlayers.bench: the same as the fusedlayers-bench console script."""

import sys

from fusedlayers.bench.cli import main

sys.exit(main())
