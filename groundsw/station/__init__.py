"""The ground station: one owner per payload link (FOP-1 kept running, everything archived,
commands from any number of clients, queued while the link is down), served to clients over
HTTP and WebSocket (`groundsw serve`), or owned in-process by a one-off command."""
