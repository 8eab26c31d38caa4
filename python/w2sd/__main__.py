"""``python -m w2sd`` is the ``w2sd`` command."""

import sys

from .cli import main

sys.exit(main())
