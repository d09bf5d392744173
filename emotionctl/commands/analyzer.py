"""``emotionctl probe URI`` and ``emotionctl analyze URI [--fps N] [--seconds S]``: the analyzer, standalone.

The commands live in :mod:`analyzer.cli` (shipped with the analyzer); this module only registers them.
"""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    from analyzer.cli import register as register_analyzer_commands

    register_analyzer_commands(commands)
