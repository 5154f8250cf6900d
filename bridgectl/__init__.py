"""The operator CLI for deployed stages: bootstrap, doctor, secrets, dead letters, report, backfill, capacity."""
