"""``python -m emotionctl`` — same as the ``emotionctl`` entry point."""

import sys

from emotionctl.cli import main

sys.exit(main())
