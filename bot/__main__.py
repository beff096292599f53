"""``python -m bot`` does what the ``seedream-bot`` command does."""

import sys

from bot.cli import main

sys.exit(main())
