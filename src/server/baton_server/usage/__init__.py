"""AI usage: the model calls agents report, model prices, and what runs cost."""
