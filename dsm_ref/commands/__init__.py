"""The command line, one module per sub-command of ``python -m dsm_ref``.

Each module provides ``add_cli_arguments(parser)`` and ``cli_main(args) -> int`` and holds only
argument parsing and printing; the work is done by the library modules it calls. Nothing in
``dsm_ref`` imports from here except :mod:`dsm_ref.cli`.
"""
