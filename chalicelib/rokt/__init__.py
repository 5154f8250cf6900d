"""Adapters for the Rokt Calendar API: the OAuth token provider and the events client."""
