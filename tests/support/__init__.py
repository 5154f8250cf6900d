"""Helpers the test tiers and the soaks (bench/soak.py, bench/sync_soak.py) share; no tests here."""
