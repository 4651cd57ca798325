"""`python -m metareward.compare`: see `metareward.compare.runs`."""

import sys

from metareward.compare.runs import main

sys.exit(main())
