"""The state vocabulary every runnable (agent or session) shares."""

from django.db import models


class Desired(models.TextChoices):
    """What a person asked for. Changed only by control.services (the writes themselves
    are agents.runtime.lifecycle's)."""

    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    STOPPED = "stopped", "Stopped"


class Status(models.TextChoices):
    """What is actually happening. Written by control.services with a desired state
    (`starting`, `stopping`), then by the loop, and by the reconciler when the loop is gone;
    every such write is in agents.runtime.lifecycle, conditional on the run it read."""

    READY = "ready", "Ready"
    STARTING = "starting", "Starting"
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    STOPPING = "stopping", "Stopping"
    STOPPED = "stopped", "Stopped"
    ERROR = "error", "Error"


# Statuses in which a loop may be alive (holding, or about to take, a lease).
LIVE_STATUSES = (Status.STARTING, Status.RUNNING, Status.PAUSED, Status.STOPPING)
