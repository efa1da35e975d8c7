"""A click group whose subcommands are imported on first use (click's documented lazy-loading pattern).

Commands live in their own modules; listing them (``--help``) imports none of them, so ``eosin --help`` and
``eosin train --help`` stay fast and never load PyTorch. A command whose module is absent is not listed.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping

import click

__all__ = ["LazyGroup"]


class LazyGroup(click.Group):
    """``lazy``: subcommand name -> (``"module:attribute"``, short help). Commands added the usual way also work."""

    def __init__(self, *args, lazy: Mapping[str, tuple[str, str]] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = lazy if lazy is not None else {}  # the mapping itself: entries added later are seen

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(super().list_commands(ctx))
        names |= {name for name, (target, _) in self.lazy.items() if _available(target)}
        return sorted(names)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is None and name in self.lazy and _available(self.lazy[name][0]):
            module, attr = self.lazy[name][0].split(":")
            command = getattr(importlib.import_module(module), attr)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in self.commands:
                rows.append((name, self.commands[name].get_short_help_str(limit=80)))
            else:
                rows.append((name, self.lazy[name][1]))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _available(target: str) -> bool:
    try:
        return importlib.util.find_spec(target.split(":")[0]) is not None
    except (ImportError, ValueError):
        return False
