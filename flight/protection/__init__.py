"""Radiation protection: checksummed weights and scrubbing, known answers, stored-model copies,
protected state, and the upset counters every check reports to."""
