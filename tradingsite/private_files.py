"""What the project writes under var/ is readable by its own user only.

The SQLite database holds raw session keys (a copy of the file is a login), var/ also holds
the development SECRET_KEY and the admin's password, and the logs say what every agent did.
So var/ and the logs folder are 0700, the database and the files SQLite keeps next to it
(-wal, -shm, -journal) 0600: created so, and tightened if an older checkout made them
readable to others. SQLite gives its -wal and -shm files the mode of the database file,
so creating that file 0600 before SQLite opens it is enough for all three.
"""

from __future__ import annotations

import os
from pathlib import Path

SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def private_dir(path: Path) -> None:
    """Create `path` (mode 0700) if missing; make it 0700 if it is ours and looser."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    _tighten(path, 0o700)


def private_sqlite(path: Path) -> None:
    """Create the database file (empty, mode 0600: SQLite takes an empty file as a new
    database) if missing, so SQLite never creates it with the umask's mode; make it and
    its companion files 0600 if they are looser."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    for name in (path, *(path.with_name(path.name + suffix) for suffix in SQLITE_COMPANIONS)):
        _tighten(name, 0o600)


def _tighten(path: Path, mode: int) -> None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return
    # Only what this user owns: another user's folder (a shared mount) is theirs to set.
    if st.st_uid == os.getuid() and st.st_mode & 0o777 & ~mode:
        path.chmod(mode)
