"""python -m rmsweep.simulate: see rmsweep/cli/simulate.py."""
import sys

from rmsweep.cli.simulate import main

sys.exit(main())
