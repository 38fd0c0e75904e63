"""The payload process's own supervision: why the previous run ended, the watchdog kicked only
while the payload is healthy, the supervisor's notify protocol, and the ground's restart and
reboot commands (service 134)."""
