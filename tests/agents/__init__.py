"""Real A2A agents (and the helper that runs them) for tests and benchmarks."""
