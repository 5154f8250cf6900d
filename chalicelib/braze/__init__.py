"""Braze adapter: the REST API's /users/track (batching limits, rate-limit headers, typed errors)."""
