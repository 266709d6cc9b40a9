"""Connectors that turn the outside world into sample batches on the tag bus (no Qt)."""
