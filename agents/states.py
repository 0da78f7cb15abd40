"""The state vocabulary every runnable (agent or session) shares."""

from django.db import models


class Desired(models.TextChoices):
    """What a person asked for. Written only by control.services."""

    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    STOPPED = "stopped", "Stopped"


class Status(models.TextChoices):
    """What is actually happening. Written by the loop (or the reconciler)."""

    READY = "ready", "Ready"
    STARTING = "starting", "Starting"
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    STOPPING = "stopping", "Stopping"
    STOPPED = "stopped", "Stopped"
    ERROR = "error", "Error"


# Statuses in which a loop may be alive (holding, or about to take, a lease).
LIVE_STATUSES = (Status.STARTING, Status.RUNNING, Status.PAUSED, Status.STOPPING)
