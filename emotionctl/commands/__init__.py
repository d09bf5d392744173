"""Command groups of ``emotionctl``: one module per group, discovered at start-up.

A module here becomes a command group by defining::

    def register(commands: argparse._SubParsersAction) -> None:
        parser = commands.add_parser("models", help="...")
        sub = parser.add_subparsers(dest="models_command", required=True, metavar="COMMAND")
        build = sub.add_parser("build", help="...")
        build.add_argument(...)
        build.set_defaults(handler=run_build)   # run_build(args: argparse.Namespace) -> int

Handlers return the exit code; raise :class:`CliError` for a clear one-line error (exit 1). Heavy imports
belong inside handlers, so ``emotionctl --help`` stays fast. Only the command's result goes to stdout;
progress and logs go to stderr.
"""


class CliError(Exception):
    """An operator-facing error: printed as ``emotionctl: error: <message>``, exit code 1."""
