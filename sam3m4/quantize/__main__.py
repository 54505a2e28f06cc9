"""``python -m sam3m4.quantize ...`` is ``sam3m4 quantize ...``."""

import sys

from sam3m4.cli import main

sys.exit(main(["quantize", *sys.argv[1:]]))
