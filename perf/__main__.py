"""``python -m perf``: the benchmark report (see :mod:`perf.bench`)."""

import sys

from perf.bench import main

if __name__ == "__main__":
    sys.exit(main())
