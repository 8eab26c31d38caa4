"""``python -m w2sd_cli`` is the ``w2sd`` command."""

import sys

from . import main

sys.exit(main())
