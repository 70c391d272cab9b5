"""One module per CLI subcommand; :mod:`interp_core.cli` discovers them."""
