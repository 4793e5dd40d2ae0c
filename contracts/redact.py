"""URLs as they may be shown: scheme and host only.

RPC providers put the API key in the path (`https://eth-mainnet.example/v2/KEY`) or the query, and a
URL may carry `user:password@`. None of that may reach an error message, a log line, a web page or
pinned content: only `redact_url(url)` does.
"""

from __future__ import annotations

from urllib.parse import urlsplit


def redact_url(url: str) -> str:
    """`https://user:pw@rpc.example:8545/v2/KEY?k=v` -> `https://rpc.example:8545` (no credentials, path,
    query or fragment). Something that is not a URL with a host gives a placeholder, never itself."""
    try:
        parts = urlsplit(str(url).strip())
        host = parts.hostname
        port = parts.port
    except ValueError:
        return "(an unparseable URL)"
    if not parts.scheme or not host:
        return "(a URL without a host)"
    shown = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{shown}" + (f":{port}" if port else "")


def redact_text(text: str, url: str) -> str:
    """`text` with `url`, and its secret parts (credentials, path, query), replaced by `redact_url(url)`:
    error messages of HTTP libraries repeat the URL or its path (`Max retries exceeded with url: /v2/KEY`)."""
    safe = redact_url(url)
    result = text.replace(url, safe)
    try:
        parts = urlsplit(url)
    except ValueError:
        return result
    secrets = [parts.path + (f"?{parts.query}" if parts.query else ""), parts.path, parts.query, parts.password]
    secrets += [parts.username]
    for secret in sorted({s for s in secrets if s and s not in ("/",)}, key=len, reverse=True):
        result = result.replace(secret, "/(redacted)" if secret.startswith("/") else "(redacted)")
    return result
