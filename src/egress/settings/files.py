"""Reading the files settings point at: regular files only, each kind with a size cap.

Every loader reads through :func:`read_regular_file`, so no input can make egress block or eat
memory: ``/dev/zero``, ``/dev/urandom``, a FIFO with no writer, a directory or a socket is refused
before a byte is read, and a file is never read past its cap.

=======================================  =======  ==========================================
what                                     cap      why that much
=======================================  =======  ==========================================
``egress.yaml`` (``--config``)           1 MiB    thousands of exclusions still fit
seed Helm values (``--helm-values``)     1 MiB    the same, for ``customizations.yaml``
``proxy.password_file``                  4 KiB    one line: the proxy password
``proxy.ca_file``                        1 MiB    a PEM bundle of several hundred CAs
=======================================  =======  ==========================================

>>> p = Problems()
>>> read_regular_file("/dev/zero", "proxy.password_file", PASSWORD_LIMIT, p, fix="use a file")
>>> print(p.errors[0])
proxy.password_file: "/dev/zero" is a character device, not a regular file (use a file)
"""

from __future__ import annotations

import os
import ssl
import stat
from typing import Final

from egress.redact import Secret, shown
from egress.settings.fields import Problems, text

KIB: Final = 1024
MIB: Final = 1024 * KIB
CONFIG_LIMIT: Final = 1 * MIB
"""The largest ``egress.yaml`` or Helm values file egress reads."""
PASSWORD_LIMIT: Final = 4 * KIB
"""The largest ``proxy.password_file``."""
CA_LIMIT: Final = 1 * MIB
"""The largest ``proxy.ca_file``."""

_CHUNK: Final = 64 * KIB
_KINDS: Final = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
)


def _size_text(limit: int) -> str:
    return f"{limit // MIB} MiB" if limit % MIB == 0 else f"{limit // KIB} KiB"


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def read_regular_file(
    path: str | os.PathLike[str], fld: str, limit: int, p: Problems, *, fix: str
) -> bytes | None:
    """The bytes of the regular file at ``path`` if it holds at most ``limit`` bytes.

    Otherwise None, with one Problem on ``fld`` saying what the path is and ``fix`` as the hint.
    The file is opened without blocking (so a FIFO with no writer cannot hang), checked to be a
    regular file before any byte is read, and read at most ``limit + 1`` bytes (a file that grows
    while it is read is refused too).
    """
    name = os.fspath(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(name, flags | getattr(os, "O_CLOEXEC", 0))
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "invalid path"
        p.error(fld, f"{shown(name)} cannot be read ({reason})", fix)
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            p.error(fld, f"{shown(name)} is {_kind(info.st_mode)}, not a regular file", fix)
            return None
        too_big = f"{shown(name)} is larger than {_size_text(limit)}, the most egress reads here"
        if info.st_size > limit:
            p.error(fld, too_big, fix)
            return None
        chunks: list[bytes] = []
        left = limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, _CHUNK))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        if left <= 0:
            p.error(fld, too_big, fix)
            return None
        return b"".join(chunks)
    except OSError as exc:
        p.error(fld, f"{shown(name)} cannot be read ({exc.strerror or 'I/O error'})", fix)
        return None
    finally:
        os.close(fd)


def read_secret_file(path: str, fld: str, p: Problems) -> Secret | None:
    """The proxy password: the one line of a small UTF-8 file (a trailing newline is dropped)."""
    fix = "point it at a file that holds only the proxy password"
    data = read_regular_file(path, fld, PASSWORD_LIMIT, p, fix=fix)
    if data is None:
        return None
    try:
        secret = data.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        p.error(fld, f"{shown(path)} is not UTF-8 text", fix)
        return None
    if not secret:
        p.error(fld, f"{shown(path)} is empty", "write the proxy password into that file")
        return None
    if "\n" in secret or "\r" in secret:
        p.error(fld, f"{shown(path)} holds more than one line", "keep only the password in it")
        return None
    return Secret(secret)


def check_ca_file(path: str, fld: str, p: Problems) -> None:
    """Refuse a CA file that cannot be read or holds no PEM certificate."""
    data = read_regular_file(
        path, fld, CA_LIMIT, p, fix="point it at a PEM file of CA certificates"
    )
    if data is not None and b"-----BEGIN CERTIFICATE-----" not in data:
        p.error(fld, f"{shown(path)} holds no PEM certificate", "give the CA as a PEM file")


_PEM_MARK: Final = "-----BEGIN CERTIFICATE-----"


def read_ca_pem(value: object, fld: str, p: Problems) -> str | None:
    """Inline PEM (``proxy.ca_pem``), checked as :func:`check_ca_file` checks a file's content,
    then parsed, so a CA that TLS could not load is refused when the settings are read.

    >>> p = Problems()
    >>> read_ca_pem("not a certificate", "proxy.ca_pem", p)
    >>> p.errors[0].field, p.errors[0].message
    ('proxy.ca_pem', 'holds no PEM certificate')
    """
    pem = text(value, fld, p)
    if pem is None:
        return None
    fix = f"paste the CA certificate as PEM: {_PEM_MARK} ..."
    if len(pem.encode("utf-8", errors="replace")) > CA_LIMIT:
        p.error(fld, f"is larger than {_size_text(CA_LIMIT)}, the most egress reads here", fix)
        return None
    if _PEM_MARK not in pem:
        p.error(fld, "holds no PEM certificate", fix)
        return None
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=pem)
    except (ValueError, ssl.SSLError):
        p.error(fld, "holds no usable PEM certificate", fix)
        return None
    return pem.replace("\r\n", "\n").strip() + "\n"
