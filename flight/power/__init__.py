"""The power budget: battery and solar readings (the EPS through sysfs, the bench's battery
model), the governor that holds or slows compute by them, and the monitor that carries it out."""
