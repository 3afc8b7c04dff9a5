"""python -m rmsweep.features: see rmsweep/cli/features.py."""
import sys

from rmsweep.cli.features import main

sys.exit(main())
