"""python -m rmsweep.select: see rmsweep/cli/select.py."""
import sys

from rmsweep.cli.select import main

sys.exit(main())
