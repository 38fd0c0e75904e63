"""`python -m tools.fault_campaign`: the campaign's command line (tools/fault_campaign/cli.py)."""

from __future__ import annotations

import sys

from tools.fault_campaign.cli import main

sys.exit(main())
