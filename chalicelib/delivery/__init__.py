"""Braze → Rokt: Braze webhooks become Rokt Calendar events, exactly once (direct or queued)."""
