"""`python -m functions` is the `lrowatch` CLI."""
import sys

from functions.cli import main

sys.exit(main())
