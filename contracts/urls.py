"""URLs that may carry secrets (RPC endpoints with an API key in their path, feeds with a key in their
query, `user:pass@`): shown anywhere (messages, logs, snapshots, the public gallery) only as their
origin, scheme://host[:port].

Kept in contracts/ because RPC URLs are the commonest case and contracts/ imports nothing of the
studio; evolve/, studio/ and app.py import it from here.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# A URL inside free text (an exception's message): scheme, then everything up to a space or a quote.
_URL_IN_TEXT = re.compile(r"""\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'"<>]+""")
# requests/urllib3 name the path alone: "...(host='h', port=443): Max retries exceeded with url: /v2/KEY (Caused".
_BARE_PATH_IN_TEXT = re.compile(r"(\burl: )/\S*")


def redact_url(url: str) -> str:
    """`url` reduced to scheme://host[:port]: no user, password, path, query or fragment.
    Something that does not parse as a URL with a host is shown as `<url>`, never as itself."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
        port = parts.port
    except ValueError:
        return "<url>"
    if not parts.scheme or not host:
        return "<url>"
    shown_host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme.lower()}://{shown_host}" + (f":{port}" if port is not None else "")


def redact_urls(text: str) -> str:
    """Every URL inside `text` (an error message, a log line) reduced to its origin; the path that
    requests and urllib3 print after "with url:" is dropped."""
    text = _URL_IN_TEXT.sub(lambda found: redact_url(found.group(0)), text)
    return _BARE_PATH_IN_TEXT.sub(r"\1/...", text)


def has_credentials(url: str) -> bool:
    """True when `url` carries a user name or password (`https://user:pass@host/`)."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return False
    return parts.username is not None or parts.password is not None
