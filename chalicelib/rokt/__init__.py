"""Adapters for the Rokt Calendar API: the OAuth token provider, the events client, the subscriptions client."""
