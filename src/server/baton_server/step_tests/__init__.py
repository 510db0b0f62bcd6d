"""Testing one step of a workflow on its own: its agent called once, no run created."""
