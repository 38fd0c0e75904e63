"""Thermal management: temperature sensors (sysfs, simulated), the governor and its actuators."""
