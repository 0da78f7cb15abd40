"""Celery entry points of the control plane (thin)."""

from celery import shared_task

from control.reconcile import reconcile as reconcile_once


@shared_task(name="control.tasks.reconcile", ignore_result=True)
def reconcile() -> str:
    return reconcile_once().summary()
