"""Rokt → Braze: Rokt Calendar's webhooks become ``rokt:*`` attributes and custom events in Braze."""
