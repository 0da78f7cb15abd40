"""API tokens for programs, and the permission that allows control actions."""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.db import models


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiToken(models.Model):
    """A bearer token. Only its SHA-256 is stored; the token itself is shown once."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    key_hash = models.CharField(max_length=64, unique=True)
    # The first characters, so a person can tell tokens apart in the admin.
    prefix = models.CharField(max_length=8)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        permissions = [("control", "Can start, stop, pause and resume agents, sessions and the system")]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @classmethod
    def issue(cls, user) -> tuple[ApiToken, str]:
        raw = "pt_" + secrets.token_urlsafe(32)
        token = cls.objects.create(user=user, key_hash=hash_token(raw), prefix=raw[:8])
        return token, raw

    @classmethod
    def user_for(cls, raw: str):
        token = cls.objects.select_related("user").filter(key_hash=hash_token(raw)).first()
        if token is None or not token.user.is_active:
            return None
        return token.user


CONTROL_PERMISSION = "control.control"
