"""``python -m perf.kernels``: the kernel benchmark (see :mod:`perf.kernels.cli`)."""

import sys

from perf.kernels.cli import main

if __name__ == "__main__":
    sys.exit(main())
