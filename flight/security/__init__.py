"""Uplink security: keys, authentication of TC frames, anti-replay counters."""
