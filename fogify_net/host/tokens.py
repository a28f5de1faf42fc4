"""Bearer tokens kept in root-only files: read, made, and compared.

A token never travels on a command line (every user reads /proc/<pid>/cmdline)
nor to stdout (logs, terminals, CI output); it lives in a file only its owner
may read, or in a process's environment (readable by its owner and root).
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat
from pathlib import Path


class TokenFileError(ValueError):
    """A token file that others may read, or that cannot be read or made."""


def read_token_file(path: str | Path) -> str:
    """The token in `path`; refuses a file that group or others may read or write."""
    token = read_secret_file(path).strip()
    if not token or not token.isascii() or not token.isprintable():
        raise TokenFileError(f"the token file {path} holds no usable token (printable ASCII)")
    return token


def read_secret_file(path: str | Path) -> str:
    """The text of `path`, a regular file (not a symlink) that group and others may not read or write."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as error:
        raise TokenFileError(f"cannot read the token file {path}: {error.strerror}") from None
    with os.fdopen(fd) as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_mode & 0o077:
            raise TokenFileError(f"the token file {path} must be a regular file only its owner may read "
                                 f"(chmod 600 {path})")
        return handle.read()


def ensure_token_file(path: str | Path) -> str:
    """The token in `path`, made (mode 0600, 32 random bytes in URL-safe base64) if there is none."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            return read_token_file(path)
        except OSError as error:
            raise TokenFileError(f"cannot make the token file {path}: {error.strerror}") from None
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
    return read_token_file(path)


def bearer_matches(header: str | None, token: str) -> bool:
    """Whether an Authorization header carries `token`, in constant time. Any text is fine: a header
    with characters beyond ASCII is a mismatch (a 401), not an error (hmac refuses such str)."""
    given = (header or "").encode("utf-8", "replace")
    return hmac.compare_digest(given, f"Bearer {token}".encode())
