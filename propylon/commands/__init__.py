"""One module per ``propylon`` subcommand; each offers ``add_arguments(parser)`` and ``run(args) -> int``."""
