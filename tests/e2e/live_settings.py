"""Settings of the web server the browser tests start: the project's own, plus one change.

The test process hashes passwords with MD5 (tests/conftest.py: real hashing costs ~0.3 s
per user), so the users a test creates can only log in through the real form when the
server knows that hasher too. Nothing else differs from tradingsite.settings.
"""

from tradingsite.settings import *  # noqa: F403

PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.MD5PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
