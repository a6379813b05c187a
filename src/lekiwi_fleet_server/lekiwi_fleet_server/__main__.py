"""`python -m lekiwi_fleet_server`: the command line."""

import sys

from lekiwi_fleet_server.cli import main

sys.exit(main())
