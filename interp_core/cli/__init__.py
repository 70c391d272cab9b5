"""The command line, ``python -m interp_core SUBCOMMAND ... --json``: the top floor of the engine.

``main`` parses and dispatches, ``support`` holds what subcommands share, and ``commands/`` has
one module per subcommand. Nothing below this floor imports it.
"""

from interp_core.cli.main import build_parser, discover_commands, main
from interp_core.cli.support import model_from_args, to_jsonable

__all__ = ["build_parser", "discover_commands", "main", "model_from_args", "to_jsonable"]
