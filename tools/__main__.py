"""``python -m tools`` is the ``agentloop`` command."""

import sys

from tools.cli import main

sys.exit(main())
