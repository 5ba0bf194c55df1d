"""python -m mergan: the ``mergan`` command (``mergan.cli``)."""
import sys

from .cli import main

sys.exit(main())
