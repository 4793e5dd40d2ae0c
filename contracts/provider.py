"""The studio's JSON-RPC transport: web3's HTTPProvider with every answer size- and depth-checked.

An RPC endpoint is outside the studio (the gallery may read any network's public node). web3 parses
answers with `json.loads`, and after web3's import the recursion limit is 100000, so one deeply nested
answer would segfault the whole process (web app and scheduler); see metadata.jsonsafe. Here an answer
over the limits is refused with RPCAnswerRefusedError before it is parsed.

web3 and urllib3 log every request's full URL (or its path) at DEBUG, and an RPC URL's path or query
often holds the provider's API key: `RedactURLsFilter` on those loggers cuts such URLs to scheme and host
and request paths to `/(redacted)`, so STUDIO_LOG_LEVEL=DEBUG never writes a key to a log.
"""

from __future__ import annotations

import logging
import re
from typing import Any, cast

from web3 import HTTPProvider
from web3.types import RPCResponse

from contracts.errors import ChainError
from contracts.urls import redact_url, redact_urls
from metadata.errors import BoundedJSONError
from metadata.jsonsafe import load_json_bounded

MAX_RPC_ANSWER_BYTES = 64 * 1024 * 1024
# JSON-RPC answers nest a handful of levels (a block with transactions and access lists stays below 10).
MAX_RPC_ANSWER_DEPTH = 32


_REQUEST_LINE = re.compile(r'"([A-Z]+) (\S+) (HTTP/[0-9.]+)"')
# Loggers that write request URLs or paths (web3's provider and session manager, urllib3 under requests).
URL_LOGGERS = (
    "web3.providers.HTTPProvider",
    "web3._utils.http_session_manager.HTTPSessionManager",
    "urllib3.connectionpool",
)


class RedactURLsFilter(logging.Filter):
    """Rewrites a record's message with every URL cut to scheme+host and every request path hidden."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler to report
            return True
        message = redact_urls(message)
        record.msg = _REQUEST_LINE.sub(r'"\1 /(redacted) \3"', message)
        record.args = None
        return True


def install_log_redaction() -> None:
    """Attach RedactURLsFilter to the loggers that write URLs (idempotent)."""
    for name in URL_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactURLsFilter) for f in logger.filters):
            logger.addFilter(RedactURLsFilter())


install_log_redaction()


class RPCAnswerRefusedError(ChainError):
    """A JSON-RPC answer too large or too deeply nested to parse safely: the endpoint is broken or hostile."""


class BoundedHTTPProvider(HTTPProvider):
    """HTTPProvider whose answers are checked by `load_json_bounded` before they are parsed."""

    def decode_rpc_response(self, raw_response: bytes) -> RPCResponse:  # type: ignore[override]
        endpoint = redact_url(str(self.endpoint_uri))
        try:
            value: Any = load_json_bounded(
                raw_response,
                max_bytes=MAX_RPC_ANSWER_BYTES,
                max_depth=MAX_RPC_ANSWER_DEPTH,
                what=f"the answer of the JSON-RPC endpoint {endpoint}",
            )
        except BoundedJSONError as exc:
            raise RPCAnswerRefusedError(
                f"{exc}. Check that STUDIO_CHAIN__RPC_URL (or STUDIO_APP__GALLERY_RPC_URL) names a real node."
            ) from None
        return cast(RPCResponse, value)
