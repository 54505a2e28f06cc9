"""``python -m sam3m4`` is the same as the ``sam3m4`` command."""

import sys

from sam3m4.cli import main

sys.exit(main())
