"""Sub-commands of the ``xappa`` command line.

Each public module defines ``register(subparsers)``, which adds one sub-command and sets its
``func`` default to a function ``(args) -> int``. :func:`xappa.cli.build_parser` finds them.
"""
