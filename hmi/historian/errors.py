"""The historian's error: its own module, so that every other module of the package can
raise it without importing one another (lock.py subclasses it, schema.py raises it)."""


class HistorianError(Exception):
    """A historian file that cannot be used as asked; the message says why."""
