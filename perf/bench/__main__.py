"""``python -m perf.bench``: the benchmark report (as ``python -m perf``)."""

import sys

from perf.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
