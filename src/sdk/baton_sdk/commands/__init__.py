"""The client commands of ``baton``: agents, workflows, runs, ``run``, keys, projects,
webhooks and schedules.

They talk to a Baton server through the SDK's blocking client. Each module imports
the SDK, grpc and rich only inside its commands, so building the command tree (for
``baton --help`` or ``baton serve``) stays cheap.
"""

from __future__ import annotations

import click


def register(main: click.Group) -> None:
    """Add the client commands to the ``baton`` group."""
    from baton_sdk.commands.agents import agents
    from baton_sdk.commands.keys import keys, projects
    from baton_sdk.commands.runs import run, runs
    from baton_sdk.commands.schedules import schedules
    from baton_sdk.commands.webhooks import webhooks
    from baton_sdk.commands.workflows import workflows

    for command in (agents, workflows, runs, run, keys, projects, webhooks, schedules):
        main.add_command(command)
