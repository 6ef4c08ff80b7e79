"""What of a value may be shown: the one place that knows how to hide a password.

A leaf module (it imports nothing of egress), used by every place that shows a URL, a value or an
error: settings messages, decisions, transport errors, the CLI.

- :class:`Secret` holds a password; it never shows itself in ``str``, ``repr``, logs or messages.
- :func:`mask_url` masks the password of a URL by *parsing* it, so a password holding ``/``,
  ``@``, ``:`` or ``#`` is masked whole, and so is one after a username holding ``@``.
- :func:`shown` is a value fit for a one-line message: secrets masked, control characters
  escaped (a value cannot forge a line of output), length bounded.
- :func:`scrub` removes known secret values from any text (a library's error message).

>>> mask_url("http://alice:pa/ss@proxy:3128")
'http://alice:********@proxy:3128'
>>> mask_url("http://bob@corp.example:Hunter2Secret@h:3128/x")
'http://bob@corp.example:********@h:3128/x'
>>> mask_url("postgresql://u:s3cret@db/app")
'postgresql://u:********@db/app'
>>> shown("evil\\nerror: forged")
'"evil\\\\nerror: forged"'
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["REDACTED", "Secret", "mask_url", "printable", "scrub", "shown", "split_userinfo"]

REDACTED = "********"
"""What a password is replaced with, everywhere."""

SHOWN_LIMIT = 80
"""The longest value a message quotes; longer ones are cut (a value cannot flood a log line)."""


class Secret:
    """A value that never shows itself in ``str``, ``repr``, logs or messages.

    >>> s = Secret("hunter2")
    >>> s, str(s), s.reveal()
    (Secret('********'), '********', 'hunter2')
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one place that must send it (the proxy's auth header)."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({REDACTED!r})"

    def __str__(self) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[type[Secret], tuple[str]]:
        # picklable (for multiprocessing), never printable
        return (Secret, (self._value,))


def split_userinfo(url: str) -> tuple[str, str | None, str | None, str]:
    """Split ``scheme://[user[:password]@]rest`` into (``scheme://``, user, password, rest).

    The userinfo ends at the *last* ``@``, so a password may hold ``@`` and a user may too (the
    user is what comes before the first ``:``, the password everything after). A password may
    also hold ``/``, ``?`` or ``#``, which a URL parser reads as the start of a path and would
    show: when such a delimiter comes before the last ``@`` and a ``:`` comes before the
    delimiter, the whole stretch is taken as ``user:password``. That errs on the side of hiding
    (``http://h:1/a@b`` is masked as if ``1/a`` were a password); a URL egress shows rarely has
    ``@`` in its path. Text without ``://`` has no userinfo.

    >>> split_userinfo("http://u:p@h:1/x")
    ('http://', 'u', 'p', 'h:1/x')
    >>> split_userinfo("http://h/a@b")
    ('http://', None, None, 'h/a@b')
    >>> split_userinfo("http://tok@h")
    ('http://', 'tok', None, 'h')
    """
    head, sep, rest = url.partition("://")
    if not sep:
        return "", None, None, url
    at = rest.rfind("@")
    if at < 0:
        return head + sep, None, None, rest
    before = rest[:at]
    cut = min((i for i in (before.find(d) for d in "/?#") if i >= 0), default=-1)
    if cut >= 0 and ":" not in before[:cut]:
        # "host/path@x": the '@' is in the path, there is no userinfo
        return head + sep, None, None, rest
    user, colon, password = before.partition(":")
    return head + sep, user, (password if colon else None), rest[at + 1 :]


def mask_url(text: str) -> str:
    """``text`` with the password of its URL userinfo masked (the user stays, for diagnosis).

    A userinfo with no ``:`` is kept as it is (it names a user, as in ``ssh://git@host``).

    >>> mask_url("https://proxy:3128")
    'https://proxy:3128'
    >>> mask_url("http://:p@ss@h")
    'http://:********@h'
    """
    prefix, user, password, rest = split_userinfo(text)
    if password is None:
        return text
    return f"{prefix}{user}:{REDACTED}@{rest}"


def printable(text: str) -> str:
    """``text`` with every control character, line break and other non-printable escaped.

    >>> printable("a\\r\\nb\\x1b[31m")
    'a\\\\r\\\\nb\\\\x1b[31m'
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def shown(value: object, limit: int = SHOWN_LIMIT) -> str:
    """A short rendering of a (possibly bad) value for a one-line message.

    Strings are double-quoted; anything else is described by its type and size, never built
    into a full ``repr`` (a hostile YAML file can expand to gigabytes). Passwords in URLs are
    masked, control characters escaped, and the text cut to ``limit`` characters.

    >>> shown("http://a:b@h")
    '"http://a:********@h"'
    >>> shown(10**5000)
    'a 5001-digit number'
    >>> shown(["x"] * 3)
    'a list of 3 items'
    """
    if isinstance(value, str):
        text = printable(mask_url(value[: limit * 4]))
        if len(text) > limit or len(value) > limit * 4:
            text = text[: limit - 3] + "..."
        return '"' + text.replace('"', '\\"') + '"'
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, int):
        digits = _digits(value)
        return str(value) if digits <= 20 else f"a {digits}-digit number"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return f"a mapping of {len(value)} key{'s' if len(value) != 1 else ''}"
    if isinstance(value, list | tuple | set):
        return f"a list of {len(value)} item{'s' if len(value) != 1 else ''}"
    return f"a value of type {type(value).__name__}"


def _digits(value: int) -> int:
    """Decimal digits of ``value`` without ``str()`` (Python refuses str() past 4,300 digits)."""
    n = abs(value)
    if n < 10**20:
        return len(str(n))
    # bit_length * log10(2), then correct by one comparison
    estimate = int(n.bit_length() * 0.30102999566398120) + 1
    return estimate if n >= 10 ** (estimate - 1) else estimate - 1


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret (and its percent-encoded form) masked.

    For messages egress did not write (a library's exception text) that may quote a URL it was
    given. Secrets shorter than 3 characters are ignored (masking "a" would garble every word).

    >>> scrub("connect to http://u:pa%2Fss@h failed", ["pa/ss"])
    'connect to http://u:********@h failed'
    """
    from urllib.parse import quote

    out = text
    for secret in secrets:
        if len(secret) < 3:
            continue
        for form in {secret, quote(secret, safe=""), quote(secret, safe="/")}:
            out = out.replace(form, REDACTED)
    return out
