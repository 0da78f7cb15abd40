"""The websockets: the per-process live hub, its consumers, the log tail socket, origin and login checks."""
