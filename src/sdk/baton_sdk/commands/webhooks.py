"""``baton webhooks ...``: subscribe endpoints to events, inspect and redeliver."""

from __future__ import annotations

import click

from baton_sdk.commands._common import Session, client_command, message_json
from baton_sdk.webhooks import Delivery, DeliveryStatus


@click.group()
def webhooks() -> None:
    """Subscribe endpoints to events; list and redeliver their deliveries."""


@webhooks.command("create")
@click.option("--url", required=True, help="Where deliveries are POSTed (http or https).")
@click.option("--event", "events", multiple=True, required=True, help="An event type (repeatable).")
@click.option("--secret", help="Signing secret (default: generated and printed once).")
@click.option("--description", default="", help="Human-readable description.")
@client_command
def create_webhook(
    session: Session, url: str, events: tuple[str, ...], secret: str | None, description: str
) -> None:
    """Subscribe an endpoint and print its id (and generated secret, shown this once)."""
    hook = session.client.webhooks.create(
        url=url, events=events, secret=secret, description=description
    )
    if session.json_output:
        session.print_json({**message_json(hook), "secret": hook.secret})
        return
    session.say(f"Webhook {hook.id} for {', '.join(hook.events)}")
    if hook.secret:
        click.echo(hook.secret)
        session.say("Store the secret now: it is not shown again.")


@webhooks.command("list")
@client_command
def list_webhooks(session: Session) -> None:
    """List the project's webhooks."""
    from baton_sdk.commands._render import webhooks_table

    found = session.client.webhooks.list().to_list()
    if session.json_output:
        session.print_json([message_json(hook) for hook in found])
    else:
        session.show(webhooks_table(found))


@webhooks.command("delete")
@click.argument("webhook_id")
@client_command
def delete_webhook(session: Session, webhook_id: str) -> None:
    """Delete a webhook: no more deliveries."""
    session.client.webhooks.delete(webhook_id)
    session.say(f"Webhook {webhook_id} deleted")


@webhooks.command("deliveries")
@click.argument("webhook_id")
@click.option("--status", type=click.Choice([s.value for s in DeliveryStatus]))
@click.option("--limit", type=int, default=50, show_default=True)
@client_command
def list_deliveries(session: Session, webhook_id: str, status: str | None, limit: int) -> None:
    """List a webhook's deliveries, newest first."""
    from baton_sdk.commands._render import deliveries_table

    found = session.client.webhooks.deliveries(
        webhook_id, status=DeliveryStatus(status) if status else None, limit=limit
    ).to_list()
    if session.json_output:
        session.print_json([message_json(d) for d in found])
    else:
        session.show(deliveries_table(found))


@webhooks.command("redeliver")
@click.argument("webhook_id")
@click.argument("delivery_id")
@client_command
def redeliver(session: Session, webhook_id: str, delivery_id: str) -> None:
    """Deliver again now, with the same webhook-id and body."""
    delivery = session.client.webhooks.redeliver(webhook_id, delivery_id)
    _report(session, delivery, "queued again")


@webhooks.command("test")
@click.argument("webhook_id")
@client_command
def test_webhook(session: Session, webhook_id: str) -> None:
    """Queue a ping delivery."""
    _report(session, session.client.webhooks.test(webhook_id), "queued")


def _report(session: Session, delivery: Delivery, what: str) -> None:
    if session.json_output:
        session.print_json(message_json(delivery))
    else:
        session.say(f"Delivery {delivery.id} ({delivery.event}) {what}")
