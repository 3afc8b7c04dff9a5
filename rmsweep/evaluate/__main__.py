"""python -m rmsweep.evaluate: see rmsweep/cli/evaluate.py."""
import sys

from rmsweep.cli.evaluate import main

sys.exit(main())
