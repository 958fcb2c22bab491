"""``python -m fpscale``: the ``fpscale`` command line."""

import sys

from fpscale.bench.cli import main

sys.exit(main())
