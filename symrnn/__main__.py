"""``python -m symrnn``: the ``symrnn`` command (:func:`symrnn.cli.main`)."""
import sys

from .cli import main

sys.exit(main())
