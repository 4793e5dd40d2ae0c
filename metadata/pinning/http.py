"""What the HTTP backends share: streaming multipart bodies and retries that respect the service.

Bodies are generated on the fly: a file is opened only while its own part is being sent, so a
10,000-file folder never holds 10,000 handles, and a retry simply iterates the body again.
"""

from __future__ import annotations

import email.utils
import json
import random
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from metadata.errors import PinningAuthError, PinningError, PinningQuotaError, PinningUnavailableError

READ_PIECE = 256 * 1024
MAX_RETRY_AFTER_S = 60.0
_QUOTA_WORDS = ("quota", "limit", "plan", "storage", "exceeded", "upgrade")


@dataclass(frozen=True)
class Part:
    """One multipart part: a form field (`filename` None) or a file from bytes or a path."""

    field: str
    content: bytes | Path
    filename: str | None = None
    content_type: str | None = None

    def header(self, boundary: str) -> bytes:
        disposition = f'form-data; name="{self.field}"'
        if self.filename is not None:
            safe = self.filename.replace("\\", "\\\\").replace('"', "%22").replace("\r", "").replace("\n", "")
            disposition += f'; filename="{safe}"'
        lines = [f"--{boundary}", f"Content-Disposition: {disposition}"]
        if self.content_type:
            lines.append(f"Content-Type: {self.content_type}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")

    def size(self) -> int:
        return self.content.stat().st_size if isinstance(self.content, Path) else len(self.content)


class MultipartBody:
    """A multipart/form-data body with a known length, streamed part by part (re-iterable)."""

    def __init__(self, parts: list[Part]) -> None:
        self.parts = parts
        self.boundary = "studio-" + secrets.token_hex(16)
        self.length = sum(len(p.header(self.boundary)) + p.size() + 2 for p in parts) + len(self._closing())

    def _closing(self) -> bytes:
        return f"--{self.boundary}--\r\n".encode("ascii")

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __iter__(self) -> Iterator[bytes]:
        for part in self.parts:
            yield part.header(self.boundary)
            if isinstance(part.content, Path):
                with part.content.open("rb") as handle:
                    while piece := handle.read(READ_PIECE):
                        yield piece
            else:
                yield part.content
            yield b"\r\n"
        yield self._closing()


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER_S)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        if parsed is None:
            return None
        return min(max(parsed.timestamp() - time.time(), 0.0), MAX_RETRY_AFTER_S)


def error_text(response: httpx.Response) -> str:
    """The service's own explanation, from the JSON shapes Pinata and Kubo use, else the raw text."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        return response.text[:300].strip() or response.reason_phrase
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            parts = [str(inner[k]) for k in ("reason", "code", "message", "details", "Message") if inner.get(k)]
            if parts:
                return ": ".join(parts)[:300]
        elif isinstance(inner, str):
            return inner[:300]
        if body.get("Message"):
            return str(body["Message"])[:300]
    return json.dumps(body)[:300]


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 4
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0

    def delay(self, attempt: int, response: httpx.Response | None) -> float:
        if response is not None:
            hinted = _retry_after(response)
            if hinted is not None:
                return hinted
        base = min(self.backoff_s * 2.0**attempt, self.max_backoff_s)
        return base * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not security


def send(
    service: str,
    make_request: Callable[[], httpx.Response],
    policy: RetryPolicy,
    *,
    fix_auth: str,
    sleep: Callable[[float], None] = time.sleep,
) -> httpx.Response:
    """Call `make_request` until it succeeds, retrying 429, 5xx, timeouts and refused connections.

    401/403 raise PinningAuthError (403 naming a limit raises PinningQuotaError), 402/413 raise
    PinningQuotaError, other 4xx PinningError; nothing here ever includes credentials in a message.
    """
    last_problem = ""
    for attempt in range(policy.retries + 1):
        response: httpx.Response | None = None
        try:
            response = make_request()
        except httpx.TimeoutException as exc:
            last_problem = f"timed out ({type(exc).__name__})"
        except httpx.TransportError as exc:
            last_problem = f"could not be reached ({type(exc).__name__}: {exc})"
        else:
            status = response.status_code
            if status < 400:
                return response
            text = error_text(response)
            if status in (401, 403):
                if status == 403 and any(word in text.lower() for word in _QUOTA_WORDS):
                    raise PinningQuotaError(f"{service} refused the upload: {text} (HTTP 403). Free space or upgrade.")
                raise PinningAuthError(f"{service} rejected the credentials (HTTP {status}: {text}). {fix_auth}")
            if status in (402, 413):
                raise PinningQuotaError(f"{service} refused the upload: {text} (HTTP {status}). Free space or upgrade.")
            if status != 429 and status < 500:
                raise PinningError(f"{service} refused the request (HTTP {status}: {text})")
            last_problem = f"answered HTTP {status} ({text})"
        if attempt < policy.retries:
            sleep(policy.delay(attempt, response))
    raise PinningUnavailableError(
        f"{service} {last_problem} after {policy.retries + 1} attempts; nothing was recorded. Try again later "
        "or check the service's status."
    )
