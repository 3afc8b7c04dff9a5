"""python -m rmsweep.status: see rmsweep/cli/status.py."""
import sys

from rmsweep.cli.status import main

sys.exit(main())
