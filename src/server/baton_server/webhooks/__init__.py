"""Webhooks and completion callbacks: one outbox, one signed and retried delivery path."""
