"""Outbound HTTP for feeds: the studio fetches what a rules file names, and anyone with the studio's
login can save a rules file, so every request is treated as aimed by someone hostile.

- Addresses: the host is resolved here and every address it resolves to is checked before a socket
  is opened; the connection then goes to that checked address (the hostname still drives the Host
  header, SNI and the certificate check), so a DNS answer that changes between check and connect
  (rebinding) reaches nothing unchecked. Loopback, private, link-local (cloud metadata at
  169.254.169.254), shared, multicast, unspecified and reserved addresses are refused unless the
  operator sets `STUDIO_EVOLVE__ALLOW_PRIVATE_FEEDS=true`. Redirects are checked the same way, hop by
  hop, and one that leaves the feed's origin is refused: the secrets configured for an origin never
  reach another, and the snapshot's `source` (the origin) is where the value really came from.
- Time: one wall-clock deadline per feed read covers name resolution, connects, TLS, every read and
  every redirect and retry; a server that answers a byte at a time fails the read when it runs out.
- Size: the body is read as a stream and refused past `max_body_bytes` (after decompression).
- Secrets: a header or parameter may read only environment variables the operator listed in
  `STUDIO_EVOLVE__FEED_SECRETS`, and never the studio's own `STUDIO_*` settings.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

import httpcore

from contracts.urls import redact_url
from evolve.errors import EvolveError

if TYPE_CHECKING:
    from studio.config import EvolveSettings

MAX_REDIRECTS = 5
REDIRECT_STATUS = {301, 302, 303, 307, 308}
USER_AGENT = "living-nft-studio (feed reader)"
PRIVATE_FEEDS_SETTING = "STUDIO_EVOLVE__ALLOW_PRIVATE_FEEDS"
SECRETS_SETTING = "STUDIO_EVOLVE__FEED_SECRETS"
DEADLINE_SETTING = "STUDIO_EVOLVE__FEED_DEADLINE_S"
MAX_BODY_SETTING = "STUDIO_EVOLVE__FEED_MAX_BODY_BYTES"
STUDIO_ENV_PREFIX = "STUDIO_"


@dataclass(frozen=True)
class FetchPolicy:
    """What the operator allows feeds to reach and read (settings.evolve)."""

    allow_private: bool = False
    max_body_bytes: int = 1 << 20
    deadline_s: float = 30.0
    allowed_secrets: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_settings(cls, settings: EvolveSettings) -> FetchPolicy:
        return cls(
            allow_private=settings.allow_private_feeds,
            max_body_bytes=settings.feed_max_body_bytes,
            deadline_s=settings.feed_deadline_s,
            allowed_secrets=frozenset(settings.feed_secrets),
        )


class FetchError(EvolveError):
    """A request that gave no usable answer. `retryable`: another attempt may do better. The feeds
    turn it into a FeedError; it never leaves evolve/feeds."""

    retryable = False


class FetchRefused(FetchError):
    """The studio refused to go on: a forbidden address, a redirect to another origin, a body too large."""


class FetchDeadline(FetchError):
    """The feed's total deadline ran out (connect, reads, redirects and retries together)."""


class FetchTimeout(FetchError):
    """One connect or read took longer than the feed's timeout_s."""

    retryable = True


class FetchUnavailable(FetchError):
    """The connection failed or broke (refused, reset, TLS failure)."""

    retryable = True


@dataclass(frozen=True)
class Fetched:
    status: int
    body: bytes
    url: str


def secret_env_problem(env: str, allowed: Iterable[str]) -> str | None:
    """Why the environment variable `env` may not feed a header or parameter, or None if it may."""
    if env.upper().startswith(STUDIO_ENV_PREFIX):
        return (
            f"{env} is one of the studio's own settings (STUDIO_*), which hold the signer's key and the "
            "pinning credentials: a feed secret must come from a variable of its own, e.g. WEATHER_API_KEY"
        )
    if env not in set(allowed):
        return (
            f"the operator has not allowed {env} as a feed secret: add it to {SECRETS_SETTING} "
            f"(a JSON list, e.g. {SECRETS_SETTING}='[\"{env}\"]') and restart the studio"
        )
    return None


def address_problem(address: str) -> str | None:
    """What kind of address a feed may not connect to `address` (an IP) is, or None when it is public."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for kind, refused in (
        ("a loopback address", ip.is_loopback),
        ("the unspecified address", ip.is_unspecified),
        ("a link-local address (where cloud metadata services answer)", ip.is_link_local),
        ("a multicast address", ip.is_multicast),
        ("a private address", ip.is_private),
        ("a reserved address", ip.is_reserved),
        ("an address that is not globally routable", not ip.is_global),
    ):
        if refused:
            return kind
    return None


def origin_of(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or (443 if scheme == "https" else 80)


def fetch(
    url: str,
    *,
    policy: FetchPolicy,
    deadline: float,
    timeout_s: float,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    content: bytes | None = None,
) -> Fetched:
    """One request to `url` under `policy`, finished by `deadline` (a time.monotonic() value).
    Same-origin redirects of a GET are followed (at most MAX_REDIRECTS). Raises a FetchError."""
    backend = _GuardedBackend(policy, deadline)
    sent_headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **(headers or {})}
    try:
        current = ascii_url(url)
        with httpcore.ConnectionPool(network_backend=backend, max_connections=1, http2=False) as pool:
            for _hop in range(MAX_REDIRECTS + 1):
                status, response_headers, body = _one_request(
                    pool, method, current, sent_headers, content, timeout_s, policy.max_body_bytes, deadline
                )
                if status not in REDIRECT_STATUS:
                    return Fetched(status=status, body=body, url=current)
                location = response_headers.get("location")
                if not location:
                    raise FetchRefused(f"HTTP {status} from {redact_url(current)} names no Location to go to")
                target = urljoin(current, location)
                if origin_of(target) != origin_of(url):
                    raise FetchRefused(
                        f"{redact_url(url)} redirects to another origin, {redact_url(target)}: feeds do not follow "
                        "redirects across origins (the feed's secrets belong to its own); if that source is "
                        "trusted, put its URL in the rules file"
                    )
                if method != "GET":
                    raise FetchRefused(f"{redact_url(url)} answered {method} with a redirect (HTTP {status})")
                current = ascii_url(target)
            raise FetchRefused(f"{redact_url(url)} redirected more than {MAX_REDIRECTS} times")
    except httpcore.TimeoutException:
        if time.monotonic() >= deadline:
            raise FetchDeadline(f"{redact_url(url)} gave no complete answer within the deadline") from None
        raise FetchTimeout(f"no answer within {timeout_s:g} s") from None
    except httpcore.ConnectError as exc:  # its message is the socket's or the resolver's: no URL, no header
        raise FetchUnavailable(f"cannot connect ({exc})") from None
    except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as exc:
        # Not the message: a protocol error may quote the header (with its secret) it refused.
        raise FetchUnavailable(f"the connection failed ({type(exc).__name__})") from None
    except (ValueError, TypeError) as exc:  # a URL httpcore cannot send
        raise FetchRefused(f"{redact_url(url)} cannot be requested ({type(exc).__name__})") from None


def ascii_url(url: str) -> str:
    """`url` as httpcore sends it: an IDNA host (xn--...) and a percent-encoded path and query."""
    if url.isascii():
        return url
    parts = urlsplit(url)
    host = (parts.hostname or "").encode("idna").decode("ascii")
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port is not None else "")
    path = quote(parts.path, safe="/%:@!$&'()*+,;=-._~")
    query = quote(parts.query, safe="/?%:@!$&'()*+,;=-._~")
    return urlunsplit((parts.scheme, netloc, path, query, ""))


def _one_request(
    pool: httpcore.ConnectionPool,
    method: str,
    url: str,
    headers: dict[str, str],
    content: bytes | None,
    timeout_s: float,
    max_bytes: int,
    deadline: float,
) -> tuple[int, dict[str, str], bytes]:
    timeouts = {"connect": min(timeout_s, 5.0), "read": timeout_s, "write": timeout_s, "pool": timeout_s}
    with pool.stream(
        method, url, headers=list(headers.items()), content=content, extensions={"timeout": timeouts}
    ) as response:
        response_headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in response.headers}
        if response.status in REDIRECT_STATUS or response.status >= 400:
            return response.status, response_headers, b""
        declared = response_headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise FetchRefused(
                f"{redact_url(url)} announces {int(declared):,} bytes, over the limit of {max_bytes:,} bytes "
                f"({MAX_BODY_SETTING})"
            )
        decoder = _BoundedDecoder(response_headers.get("content-encoding", ""), max_bytes, url)
        for chunk in response.iter_stream():
            decoder.feed(chunk)
            if time.monotonic() >= deadline:
                raise FetchDeadline(f"{redact_url(url)} gave no complete answer within the deadline")
        return response.status, response_headers, decoder.finish()


class _BoundedDecoder:
    """Collects the body, decompressing gzip/deflate a bounded amount at a time (a small compressed
    answer must not inflate past the cap in memory)."""

    def __init__(self, encoding: str, max_bytes: int, url: str) -> None:
        self.encoding = encoding.strip().lower()
        if self.encoding not in ("", "identity", "gzip", "x-gzip", "deflate"):
            raise FetchRefused(f"{redact_url(url)} answered in the '{encoding}' encoding, which feeds do not read")
        self.zlib = zlib.decompressobj(wbits=47) if self.encoding not in ("", "identity") else None
        self.max_bytes = max_bytes
        self.url = url
        self.body = bytearray()

    def feed(self, chunk: bytes) -> None:
        if self.zlib is None:
            self.body += chunk
        else:
            room = self.max_bytes - len(self.body) + 1
            try:
                self.body += self.zlib.decompress(chunk, room)
            except zlib.error as exc:
                raise FetchRefused(f"{redact_url(self.url)} sent a broken {self.encoding} body ({exc})") from None
        if len(self.body) > self.max_bytes:
            raise FetchRefused(
                f"the answer from {redact_url(self.url)} is over the limit of {self.max_bytes:,} bytes "
                f"({MAX_BODY_SETTING}): it is refused"
            )

    def finish(self) -> bytes:
        return bytes(self.body)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write waits at most until the feed's deadline."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: float) -> None:
        self.inner = inner
        self.deadline = deadline

    def _timeout(self, timeout: float | None) -> float:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise httpcore.ReadTimeout("the feed's deadline has passed")
        return remaining if timeout is None else min(timeout, remaining)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.inner.read(max_bytes, self._timeout(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.inner.write(buffer, self._timeout(timeout))

    def close(self) -> None:
        self.inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        tls = self.inner.start_tls(ssl_context, server_hostname, self._timeout(timeout))
        return _DeadlineStream(tls, self.deadline)

    def get_extra_info(self, info: str) -> Any:
        return self.inner.get_extra_info(info)


class _GuardedBackend(httpcore.NetworkBackend):
    """Resolves, checks every address, then connects to a checked address, never to the name."""

    def __init__(self, policy: FetchPolicy, deadline: float) -> None:
        self.policy = policy
        self.deadline = deadline
        self.sockets = httpcore.SyncBackend()

    def _remaining(self, timeout: float | None) -> float:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise httpcore.ConnectTimeout("the feed's deadline has passed")
        return remaining if timeout is None else min(timeout, remaining)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = _resolve(host, port, self._remaining(timeout))
        if not self.policy.allow_private:
            for address in addresses:
                problem = address_problem(address)
                if problem is not None:
                    raise FetchRefused(
                        f"{host} resolves to {address}, {problem}: feeds may reach only public addresses "
                        f"(an operator who means it sets {PRIVATE_FEEDS_SETTING}=true)"
                    )
        failure: Exception = httpcore.ConnectError(f"{host} has no address")
        for address in addresses:
            try:
                stream = self.sockets.connect_tcp(
                    address, port, self._remaining(timeout), local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
                continue
            return _DeadlineStream(stream, self.deadline)
        raise failure

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise FetchRefused("feeds do not connect to unix sockets")

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, min(seconds, self.deadline - time.monotonic())))


def _resolve(host: str, port: int, timeout: float) -> list[str]:
    """Every address `host` resolves to, within `timeout` (getaddrinfo itself has no timeout: it runs
    in a daemon thread that is abandoned if the resolver hangs)."""
    answer: dict[str, Any] = {}

    def lookup() -> None:
        try:
            answer["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            answer["error"] = exc

    worker = threading.Thread(target=lookup, name=f"resolve {host}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise httpcore.ConnectTimeout(f"resolving {host} took longer than {timeout:.1f} s")
    if "error" in answer:
        raise httpcore.ConnectError(f"cannot resolve {host} ({answer['error']})")
    addresses: list[str] = []
    for _family, _type, _proto, _name, sockaddr in answer["infos"]:
        if sockaddr[0] not in addresses:
            addresses.append(str(sockaddr[0]))
    return addresses
