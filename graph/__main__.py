"""Run the `fieldguard` command as `python -m graph`."""

import sys

from graph.cli import main

sys.exit(main())
