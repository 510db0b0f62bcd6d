"""Agents: the registry's view of remote A2A agents (health probes, invocation)."""
