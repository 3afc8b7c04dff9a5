"""python -m rmsweep.run: see rmsweep/cli/run.py."""
import sys

from rmsweep.cli.run import main

sys.exit(main())
