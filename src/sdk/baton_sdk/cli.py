"""The ``baton`` command: the client commands (agents, workflows, runs, keys, ...), which
talk to a server through the SDK, plus whatever installed packages add through the
``baton.commands`` entry point: the server distribution adds ``serve``, ``worker``,
``deliver``, ``migrate`` and ``secret-key``."""

from __future__ import annotations

from importlib.metadata import entry_points

import click

from baton_sdk.commands import register

#: Entry points ``name = "module:function"``; each function gets the ``baton`` group.
COMMAND_PLUGINS = "baton.commands"


@click.group()
@click.version_option(package_name="baton-orchestrator-sdk")
def main() -> None:
    """Baton: workflow orchestration for agents."""


register(main)
for _plugin in entry_points(group=COMMAND_PLUGINS):
    _plugin.load()(main)
