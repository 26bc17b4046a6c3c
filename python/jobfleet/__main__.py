"""``python -m jobfleet ...``: the ``jobfleet`` command."""

import sys

from .cli import main

sys.exit(main())
