"""Access control: who is calling (API keys, JWTs), in which project, with which role;
rate limits; the audit trail. See docs/access.md."""
