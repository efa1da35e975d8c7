"""The ``eosin`` command: a thin layer over the library.

Subcommands live in their own modules and are imported only when run, so ``eosin --help`` stays fast.
Exit codes: 0 all inputs succeeded, 1 some inputs failed (the rest were still processed), 2 usage error.
"""

from __future__ import annotations

from eosin.cli._main import entry, main

__all__ = ["entry", "main"]
