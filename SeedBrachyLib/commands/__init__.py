"""The ``seedbrachy`` subcommands on real data, one small module each; each a thin call into the library.

Every module has ``add_parser(subparsers)`` (its options) and ``run(args)`` (returns the exit code):
:mod:`.plan`, :mod:`.evaluate`, :mod:`.postplan`, :mod:`.detect`, :mod:`.batch`. Shared pieces:
:mod:`.inputs` (reading a case), :mod:`.common` (outputs, JSON, exit codes).
"""
