"""The runtime: threads, clock and the Ready loop around the core (see driver.py)."""
