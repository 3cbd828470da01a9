"""Classify a failed download into a stable kind: final (record it, never retry) or retryable.

yt-dlp wraps the real failure: `DownloadError` carries the original in ``exc_info``, `ExtractorError`
in ``cause``/``exc_info``, and Python links ``__cause__``/``__context__``. A secondary error raised while
handling the first (a temp file that never existed, a rename that failed) must not hide the first, so
we walk the whole chain and keep the DEEPEST exception that we can classify, with its own message.
Some failures reach us only as text (yt-dlp's downloader gives up on a retry with a message and no
exception attached), so each link is classified by type first, then by its message.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from http.client import IncompleteRead as HttpIncompleteRead
from typing import Iterable

from yt_dlp.networking.exceptions import HTTPError, IncompleteRead, TransportError
from yt_dlp.utils import ContentTooShortError

FINAL_KINDS = frozenset({
    "private", "removed", "unavailable", "members_only", "age_restricted", "no_format", "live",
    "too_long", "language", "bad_ref", "unknown", "expired_url", "no_captions", "translated_captions",
})
RETRYABLE_KINDS = frozenset({
    "rate_limited", "bot_check", "timeout", "server_error", "truncated", "connection", "forbidden",
    "fragment_missing", "duration_mismatch",
})


@dataclass(frozen=True)
class ErrorKind:
    kind: str  # one of FINAL_KINDS | RETRYABLE_KINDS
    retryable: bool
    message: str  # the original error text, secrets redacted


class FragmentMissing(OSError):
    """A fragment of an HLS/DASH download failed after its retries: retryable, never skipped."""


class DurationMismatch(OSError):
    """The downloaded video is shorter (or longer) than its metadata says: a hole, never published."""


class MetadataRejected(Exception):
    """A video refused from its metadata before any video byte is fetched (live, too long, language)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


# Order matters: the first pattern that matches a message wins. The bot check comes before the age
# gate (both say "Sign in to confirm"), "removed" before the generic "unavailable" (YouTube prefixes
# both with "Video unavailable"), and "try again later" is YouTube's soft rate limit.
_MESSAGE_RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern, re.IGNORECASE)) for kind, pattern in (
        ("fragment_missing", r"fragment \d+ not found"),  # HLS/DASH: a piece failed after its retries
        ("bot_check", r"confirm you.?re not a (bot|robot)"),
        ("rate_limited", r"HTTP Error 429|too many requests|rate.?limit|try again later"),
        ("age_restricted", r"confirm your age|age.?restrict|inappropriate for some users"),
        ("members_only", r"members.?only|join this channel|available to this channel's members"),
        ("private", r"private video|video is private"),
        ("removed", r"has been removed|been terminated|no longer available|removed by the uploader|"
                    r"copyright claim|violat(es|ing|ion of) youtube"),
        ("live", r"live event will begin|premieres? in |this live event|is a live stream|"
                 r"is currently live"),
        ("no_format", r"requested format is not available|no video formats found"),
        ("unavailable", r"video unavailable|not available|HTTP Error 40[014]|HTTP Error 410|"
                        r"does not exist|geo.?restrict"),
        ("forbidden", r"HTTP Error 403"),
        ("server_error", r"HTTP Error 5\d\d"),
        ("truncated", r"bytes read|more expected|Downloaded \d+ bytes, expected|did not get any data|"
                      r"incomplete ?read|content too short"),
        ("timeout", r"timed out|timeout"),
        ("connection", r"connection (reset|refused|aborted)|remote end closed|broken pipe|"
                       r"network is unreachable|name or service not known|name resolution|"
                       r"unable to connect|EOF occurred"),
    )
)

_NOISE = re.compile(r"\x1b\[[0-9;]*m|\r|^(ERROR|WARNING):\s*|\[download\] Got error:\s*|^\s+")
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/@:]+(:[^\s/@]*)?@")
_COOKIE_HEADER = re.compile(r"(?im)^(\s*(set-)?cookie\s*:).*$")


# Option names whose values are secrets wherever they appear (yt-dlp params, HTTP headers, config).
SECRET_KEY = re.compile(r"pass|token|secret|cookie|auth|credential|api.?key|session", re.IGNORECASE)


def secret_values(obj: object, under_secret: bool = False) -> list[str]:
    """Every string under a secret-looking key of ``obj`` (nested dicts and lists): what must never be
    logged or written (``{"http_headers": {"Authorization": "Bearer x"}}`` gives ``["Bearer x", "x"]``)."""
    found: list[str] = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            found += secret_values(value, under_secret or bool(SECRET_KEY.search(str(key))))
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            found += secret_values(value, under_secret)
    elif isinstance(obj, str) and under_secret and obj:
        found += [obj, *obj.split()[1:]]  # "Bearer <token>": the token alone too
    return found


def redact_mapping(obj: object) -> object:
    """``obj`` with the values of secret-looking keys and URL credentials replaced (for files: the
    manifest, a saved info JSON)."""
    if isinstance(obj, dict):
        return {k: "<redacted>" if SECRET_KEY.search(str(k)) and v not in (None, "", {}, [])
                else redact_mapping(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact_mapping(v) for v in obj]
    if isinstance(obj, str):
        return _URL_USERINFO.sub(r"\1***@", obj)
    return obj


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Text with proxy credentials, cookie headers and any given secret strings masked."""
    text = _URL_USERINFO.sub(r"\1***@", text)
    text = _COOKIE_HEADER.sub(r"\1 ***", text)
    for secret in secrets:
        if secret and len(secret) >= 3:  # masking 1-2 letters would shred every message
            text = text.replace(secret, "***")
    return text


def clean_message(text: str) -> str:
    """yt-dlp's text without colour codes, carriage returns and the ERROR:/Got error: prefixes."""
    previous = None
    while previous != text:
        previous, text = text, _NOISE.sub("", text)
    return text.strip()


def _status(exc: BaseException) -> int | None:
    """HTTP status of yt-dlp's or urllib's HTTPError, else None."""
    for attr in ("status", "code"):
        value = getattr(exc, attr, None)
        if isinstance(value, int) and 100 <= value < 600:
            return value
    return None


def _kind_by_type(exc: BaseException) -> str | None:
    if isinstance(exc, MetadataRejected):
        return exc.kind
    if isinstance(exc, DurationMismatch):
        return "duration_mismatch"
    if isinstance(exc, FragmentMissing):
        return "fragment_missing"
    status = _status(exc) if isinstance(exc, (HTTPError, OSError)) else None
    if status is not None:
        return {429: "rate_limited", 403: "forbidden", 401: "forbidden"}.get(
            status, "server_error" if status >= 500 else "unavailable" if status in (404, 410) else None)
    if isinstance(exc, (IncompleteRead, HttpIncompleteRead, ContentTooShortError)):
        return "truncated"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timeout"
    if isinstance(exc, ConnectionError):
        return "connection"
    return None


def _kind_by_message(message: str) -> str | None:
    for kind, pattern in _MESSAGE_RULES:
        if pattern.search(message):
            return kind
    return None


def exception_chain(exc: BaseException) -> list[BaseException]:
    """The exception and every exception linked to it, outermost first (breadth-first)."""
    out: list[BaseException] = []
    seen: set[int] = set()
    queue: list[BaseException | None] = [exc]
    while queue:
        cur = queue.pop(0)
        if cur is None or id(cur) in seen:
            continue
        seen.add(id(cur))
        out.append(cur)
        info = getattr(cur, "exc_info", None)
        if isinstance(info, tuple) and len(info) > 1 and isinstance(info[1], BaseException):
            queue.append(info[1])
        cause = getattr(cur, "cause", None)
        # `raise X from None` says the handled exception is not the cause: do not follow it
        context = None if cur.__suppress_context__ else cur.__context__
        queue.extend([cause if isinstance(cause, BaseException) else None, cur.__cause__, context])
    return out


def retry_after_s(exc: BaseException) -> float | None:
    """Seconds a 429/503 answer asked the client to wait (its ``Retry-After``: seconds or an HTTP date)."""
    for link in exception_chain(exc):
        response = getattr(link, "response", None)
        headers = getattr(response, "headers", None) or getattr(link, "headers", None)
        value = headers.get("Retry-After") if headers is not None else None
        if not value:
            continue
        value = str(value).strip()
        if value.isdigit():
            return float(value)
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None  # not a form RFC 9110 allows: ignore it
        return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
    return None


def _message_of(exc: BaseException) -> str:
    if isinstance(exc, MetadataRejected):
        return str(exc)
    orig = getattr(exc, "orig_msg", None)  # ExtractorError without the "please report" boilerplate
    return clean_message(str(orig if orig else exc) or type(exc).__name__)


def classify(exc: BaseException, secrets: Iterable[str] = ()) -> ErrorKind:
    """The kind of a failure, from the deepest exception in its chain that we recognise."""
    chain = exception_chain(exc)
    found: tuple[str, BaseException] | None = None
    for link in chain:
        kind = _kind_by_type(link) or _kind_by_message(_message_of(link))
        if kind is not None:
            found = (kind, link)  # keep going: a deeper link is closer to the original failure
    outer = _message_of(exc)
    if found is None:
        return ErrorKind("unknown", False, redact(_message_of(chain[-1]), secrets))
    kind, link = found
    root = _message_of(link)
    # The outer text is kept when it only adds context to the same failure ("Unable to download video
    # subtitles for 'en': HTTP Error 429"); when it is a different, secondary error, the root wins.
    message = outer if root and root in outer else root
    return ErrorKind(kind, kind in RETRYABLE_KINDS, redact(message, secrets))
