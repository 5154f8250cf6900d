"""Maintenance scripts; never deployed, never imported by the bridge."""
