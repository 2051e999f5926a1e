"""``python -m perf``: the benchmark report (see :mod:`perf.bench.cli`)."""

import sys

from perf.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
