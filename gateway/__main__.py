"""`python -m gateway`: the command line (gateway/cli)."""

import sys

from gateway.cli.main import main

sys.exit(main())
