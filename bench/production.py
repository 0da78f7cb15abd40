"""Production settings for the benchmarks: imported first by every bench script.

Figures are taken as a deployment would run: DEBUG off (with it on, Django keeps every
query's SQL and timing in memory and templates do debug bookkeeping, so renders and
fills measure the developer's checkout, not the product). DEBUG=0 needs a SECRET_KEY; a
random one per run does, since nothing a benchmark signs outlives it. The processes a
benchmark starts (daphne, Celery workers) inherit this environment.
"""

from __future__ import annotations

import os
import secrets

os.environ["DEBUG"] = "0"
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
