"""``python -m clipzero``: the same as the ``clipzero`` command."""

import sys

from .cli import main

sys.exit(main())
