"""python -m mgdsl ... is the `mgdsl` command."""
import sys

from .cli import main

sys.exit(main())
