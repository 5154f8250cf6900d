"""rokt-calendar-bridge: Braze webhooks in, Rokt Calendar events out."""

__version__ = "0.1.0"
