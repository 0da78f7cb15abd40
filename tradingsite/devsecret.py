"""A per-checkout development SECRET_KEY, so none is committed to the repository."""

import os
import secrets
from pathlib import Path


def development_secret_key(var_dir: Path) -> str:
    """Return the key stored in var/secret_key, creating it (mode 600) on first use."""
    path = var_dir / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        var_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(50)
        try:
            with open(path, "x", opener=lambda p, f: os.open(p, f, 0o600)) as fh:
                fh.write(key)
        except FileExistsError:  # another process created it first
            return path.read_text().strip()
        return key
