"""Feeds against real sources: an HTTP server on 127.0.0.1 and the clock in real timezones."""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler

import pytest

from contracts.urls import redact_url, redact_urls
from evolve.errors import (
    FeedConfigError,
    FeedMalformed,
    FeedRefused,
    FeedStale,
    FeedUnreachable,
    FeedValueInvalid,
)
from evolve.feeds.base import FeedValue
from evolve.feeds.clock import ClockFeed
from evolve.feeds.fetch import FetchPolicy, address_problem, ascii_url
from evolve.feeds.http_json import HeaderSpec, HttpJsonFeed
from evolve.logs import JsonFormatter
from metadata.errors import BoundedJSONError
from metadata.jsonsafe import json_depth, load_json_bounded
from tests.fixtures.http import send_json, start_http_server, stop_http_server
from tests.fixtures.paths import REPO_ROOT


class FeedServer:
    """A weather-like JSON API with endpoints that misbehave in the ways real ones do."""

    def __init__(self) -> None:
        self.hits: dict[str, int] = {}
        self.seen_headers: list[dict[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                path = self.path.split("?", 1)[0]
                server.hits[path] = server.hits.get(path, 0) + (path != self.path)
                server.seen_headers.append(dict(self.headers))
                now = datetime.now(UTC).isoformat()
                body: bytes
                status = 200
                if path == "/good":
                    body = json.dumps({"current": {"temperature": 21.5, "time": now}, "list": [1, 2]}).encode()
                elif path == "/slow":
                    time.sleep(2.0)
                    body = b'{"current": {"temperature": 1}}'
                elif path == "/500":
                    status, body = 500, b"internal error"
                elif path == "/flaky":
                    status = 503 if server.hits[path] == 1 else 200
                    body = json.dumps({"current": {"temperature": 7, "time": now}}).encode()
                elif path == "/malformed":
                    body = b"<html>maintenance</html>"
                elif path == "/stale":
                    old = (datetime.now(UTC) - timedelta(hours=5)).isoformat()
                    body = json.dumps({"current": {"temperature": 3, "time": old}}).encode()
                elif path == "/nan":
                    body = b'{"current": {"temperature": NaN, "time": 0}}'
                elif path == "/auth":
                    if self.headers.get("Authorization") != "Bearer s3cret-token":
                        status, body = 401, b'{"error": "unauthorized"}'
                    else:
                        body = b'{"current": {"temperature": 12}}'
                else:
                    status, body = 404, b"{}"
                send_json(self, status, body)

        self.httpd, self.url = start_http_server(Handler)

    def close(self) -> None:
        stop_http_server(self.httpd)


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    server = FeedServer()
    yield server
    server.close()


# The test servers listen on 127.0.0.1: reaching them is what allow_private_feeds allows.
LOCAL = FetchPolicy(allow_private=True)


def feed(server: FeedServer, path: str, **options: object) -> HttpJsonFeed:
    defaults: dict[str, object] = {"timeout_s": 5.0, "retries": 0, "backoff_s": 0.05, "policy": LOCAL}
    return HttpJsonFeed(name="weather", url=server.url + path, path="current.temperature", **{**defaults, **options})


def test_good_feed_returns_value_with_source_and_times(feed_server: FeedServer) -> None:
    result = feed(feed_server, "/good", timestamp_path="current.time", max_age_s=600).read(datetime.now(UTC))
    assert isinstance(result, FeedValue)
    assert result.value == 21.5
    assert result.source == feed_server.url  # the origin: a key in a path or query never reaches the snapshot
    assert result.observed_at is not None
    assert abs((result.fetched_at - datetime.now(UTC)).total_seconds()) < 60
    assert result.to_json()["ok"] is True


def test_slow_feed_times_out_as_unreachable(feed_server: FeedServer) -> None:
    result = feed(feed_server, "/slow", timeout_s=0.3).read(datetime.now(UTC))
    assert isinstance(result, FeedUnreachable)
    assert "no answer within 0.3 s" in str(result)


def test_server_error_is_retried_then_reported(feed_server: FeedServer) -> None:
    result = feed(feed_server, "/500", retries=2).read(datetime.now(UTC))
    assert isinstance(result, FeedUnreachable)
    assert "HTTP 500 after 3 attempts" in str(result)
    assert feed_server.hits["/500"] == 3


def test_transient_error_recovers_on_retry(feed_server: FeedServer) -> None:
    result = feed(feed_server, "/flaky", retries=2).read(datetime.now(UTC))
    assert isinstance(result, FeedValue)
    assert result.value == 7
    assert feed_server.hits["/flaky"] == 2


def test_malformed_document_and_missing_path_are_named(feed_server: FeedServer) -> None:
    result = feed(feed_server, "/malformed").read(datetime.now(UTC))
    assert isinstance(result, FeedMalformed)
    assert "not JSON" in str(result)
    missing = HttpJsonFeed(name="w", url=feed_server.url + "/good", path="current.humidity", policy=LOCAL).read(
        datetime.now(UTC)
    )
    assert isinstance(missing, FeedMalformed)
    assert "no 'current.humidity'" in str(missing)
    by_index = HttpJsonFeed(name="w", url=feed_server.url + "/good", path="list.1", policy=LOCAL).read(
        datetime.now(UTC)
    )
    assert isinstance(by_index, FeedValue)
    assert by_index.value == 2


def test_stale_value_is_refused(feed_server: FeedServer) -> None:
    result = feed(feed_server, "/stale", timestamp_path="current.time", max_age_s=3600).read(datetime.now(UTC))
    assert isinstance(result, FeedStale)
    assert "max_age_s = 3600" in str(result)


def test_nan_and_out_of_range_values_are_invalid(feed_server: FeedServer) -> None:
    nan = feed(feed_server, "/nan").read(datetime.now(UTC))
    assert isinstance(nan, FeedValueInvalid)
    assert "nan" in str(nan)
    too_hot = feed(feed_server, "/good", maximum=20.0).read(datetime.now(UTC))
    assert isinstance(too_hot, FeedValueInvalid)
    assert "above the allowed maximum 20.0" in str(too_hot)


def test_unreachable_host_is_an_error_not_an_exception() -> None:
    result = HttpJsonFeed(
        name="w", url="http://127.0.0.1:9/x", path="a", timeout_s=1, retries=1, backoff_s=0.01, policy=LOCAL
    ).read(datetime.now(UTC))
    assert isinstance(result, FeedUnreachable)
    assert "cannot connect" in str(result)


def test_header_secret_comes_from_environment_and_is_never_in_the_snapshot(
    feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = HeaderSpec(name="Authorization", env="WEATHER_TOKEN", format="Bearer {}")
    allowed = FetchPolicy(allow_private=True, allowed_secrets=frozenset({"WEATHER_TOKEN"}))
    unset = feed(feed_server, "/auth", headers=[spec], policy=allowed).read(datetime.now(UTC))
    assert isinstance(unset, FeedConfigError)
    assert "WEATHER_TOKEN" in str(unset)
    monkeypatch.setenv("WEATHER_TOKEN", "s3cret-token")
    result = feed(feed_server, "/auth", headers=[spec], policy=allowed).read(datetime.now(UTC))
    assert isinstance(result, FeedValue)
    assert result.value == 12
    assert feed_server.seen_headers[-1]["Authorization"] == "Bearer s3cret-token"
    assert "s3cret" not in json.dumps(result.to_json())


@pytest.mark.parametrize(
    ("zone", "hemisphere", "moment", "expected"),
    [
        # 23:30 UTC on a Friday in January is already Saturday morning in Tokyo.
        ("Asia/Tokyo", "north", datetime(2026, 1, 16, 23, 30, tzinfo=UTC), ("morning", "saturday", "winter", 8)),
        ("America/Los_Angeles", "north", datetime(2026, 7, 1, 3, 0, tzinfo=UTC), ("evening", "tuesday", "summer", 20)),
        ("Australia/Sydney", "south", datetime(2026, 7, 1, 3, 0, tzinfo=UTC), ("afternoon", "wednesday", "winter", 13)),
        ("Europe/Paris", "north", datetime(2026, 3, 29, 1, 30, tzinfo=UTC), ("night", "sunday", "spring", 3)),
    ],
)
def test_clock_in_timezones_and_hemispheres(
    zone: str, hemisphere: str, moment: datetime, expected: tuple[str, str, str, int]
) -> None:
    result = ClockFeed(name="clock", timezone=zone, hemisphere=hemisphere).read(moment)
    assert isinstance(result, FeedValue)
    value = result.value
    assert isinstance(value, dict)
    assert (value["part_of_day"], value["weekday"], value["season"], value["hour"]) == expected
    assert value["is_weekend"] == (expected[1] in {"saturday", "sunday"})


def test_clock_with_unknown_timezone_says_so() -> None:
    result = ClockFeed(name="clock", timezone="Mars/Olympus").read(datetime.now(UTC))
    assert isinstance(result, FeedConfigError)
    assert "IANA" in str(result)


def test_query_secret_from_environment_stays_out_of_the_source(
    feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OWM_KEY", "q-secret-42")
    good = feed(
        feed_server,
        "/good",
        params=[HeaderSpec(name="appid", env="OWM_KEY"), HeaderSpec("units", "metric")],
        policy=FetchPolicy(allow_private=True, allowed_secrets=frozenset({"OWM_KEY"})),
    )
    result = good.read(datetime.now(UTC))
    assert isinstance(result, FeedValue)
    assert "/good?appid=q-secret-42&units=metric" in feed_server.hits
    assert "q-secret" not in json.dumps(result.to_json())


# --- a hostile world: secrets, addresses, redirects, size, time, depth ----------------------------


class HostileServer:
    """Endpoints that attack the reader: redirects elsewhere, huge, compressed, slow-drip, deep bodies."""

    def __init__(self, *, redirect_to: str = "") -> None:
        self.hits: list[str] = []
        self.seen_headers: list[dict[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def handle(self) -> None:
                # The reader hangs up on a body it refuses: what these tests expect.
                with contextlib.suppress(OSError):
                    super().handle()

            def do_GET(self) -> None:
                server.hits.append(self.path)
                server.seen_headers.append(dict(self.headers))
                path = self.path.split("?", 1)[0]
                if path == "/value":
                    send_json(self, 200, b'{"current": {"temperature": 4}}')
                elif path == "/elsewhere":
                    self._redirect(redirect_to + "/value")
                elif path == "/same-origin":
                    self._redirect("/value")
                elif path == "/huge":
                    send_json(self, 200, b'{"pad": "' + b"x" * (2 << 20) + b'", "current": {"temperature": 1}}')
                elif path == "/huge-chunked":
                    self._chunked(b'{"pad": "' + b"x" * (2 << 20) + b'"}')
                elif path == "/gzip-bomb":
                    body = gzip.compress(b" " * (64 << 20), compresslevel=9)
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Encoding", "gzip")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                elif path == "/drip":
                    # 200 at once, then the body a byte at a time: every read succeeds, the whole never ends in time.
                    body = b'{"current": {"temperature": 5}}'
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    for byte in body:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(0.3)
                elif path == "/deep":
                    send_json(self, 200, b"[" * 100_000 + b"]" * 100_000)
                else:
                    send_json(self, 404, b"{}")

            def _redirect(self, location: str) -> None:
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _chunked(self, body: bytes) -> None:
                self.protocol_version = "HTTP/1.1"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for start in range(0, len(body), 65536):
                    piece = body[start : start + 65536]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.write(b"0\r\n\r\n")

        self.httpd, self.url = start_http_server(Handler)

    def close(self) -> None:
        stop_http_server(self.httpd)


@pytest.fixture
def hostile() -> Iterator[Callable[..., HostileServer]]:
    made: list[HostileServer] = []

    def make(**options: str) -> HostileServer:
        made.append(HostileServer(**options))
        return made[-1]

    yield make
    for server in made:
        server.close()


def hostile_feed(url: str, **options: object) -> HttpJsonFeed:
    defaults: dict[str, object] = {"timeout_s": 5.0, "retries": 0, "backoff_s": 0.05, "policy": LOCAL}
    return HttpJsonFeed(name="weather", url=url, path="current.temperature", **{**defaults, **options})


def test_loopback_is_refused_unless_the_operator_allows_private_feeds(hostile) -> None:
    server = hostile()
    for url in (server.url + "/value", server.url.replace("127.0.0.1", "localhost") + "/value"):
        refused = hostile_feed(url, policy=FetchPolicy()).read(datetime.now(UTC))
        assert isinstance(refused, FeedRefused), refused
        assert "127.0.0.1, a loopback address" in str(refused)
        assert "STUDIO_EVOLVE__ALLOW_PRIVATE_FEEDS=true" in str(refused)
    assert server.hits == []  # refused before any connection
    allowed = hostile_feed(server.url + "/value").read(datetime.now(UTC))
    assert isinstance(allowed, FeedValue)


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("169.254.169.254", "link-local"),
        ("10.1.2.3", "private"),
        ("192.168.0.10", "private"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("fe80::1", "link-local"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 (an address refused, not one bound)
        ("224.0.0.1", "multicast"),
        ("100.64.0.1", "not globally routable"),
    ],
)
def test_non_public_addresses_are_named(address: str, kind: str) -> None:
    problem = address_problem(address)
    assert problem is not None
    assert kind in problem
    assert address_problem("93.184.215.14") is None


def test_secret_only_from_a_variable_the_operator_allowed_and_never_studio_settings(
    hostile, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = hostile()
    monkeypatch.setenv("STUDIO_CHAIN__PRIVATE_KEY", "0xsigner-key")
    monkeypatch.setenv("WEATHER_API_KEY", "weather-key")
    studio_key = HeaderSpec(name="X-Key", env="STUDIO_CHAIN__PRIVATE_KEY")
    # Even listed by mistake, a STUDIO_* variable is refused.
    listed = FetchPolicy(allow_private=True, allowed_secrets=frozenset({"STUDIO_CHAIN__PRIVATE_KEY"}))
    refused = hostile_feed(server.url + "/value", headers=[studio_key], policy=listed).read(datetime.now(UTC))
    assert isinstance(refused, FeedConfigError)
    assert "STUDIO_*" in str(refused)
    unlisted = HeaderSpec(name="X-Key", env="WEATHER_API_KEY")
    refused = hostile_feed(server.url + "/value", params=[unlisted]).read(datetime.now(UTC))
    assert isinstance(refused, FeedConfigError)
    assert "STUDIO_EVOLVE__FEED_SECRETS" in str(refused)
    assert server.hits == []  # nothing was sent
    allowed = FetchPolicy(allow_private=True, allowed_secrets=frozenset({"WEATHER_API_KEY"}))
    assert isinstance(
        hostile_feed(server.url + "/value", headers=[unlisted], policy=allowed).read(datetime.now(UTC)), FeedValue
    )
    assert server.seen_headers[-1]["X-Key"] == "weather-key"


def test_redirect_to_another_origin_is_refused_and_the_secret_stays_home(hostile, monkeypatch) -> None:
    elsewhere = hostile()
    home = hostile(redirect_to=elsewhere.url)
    monkeypatch.setenv("WEATHER_API_KEY", "weather-key")
    secret = [HeaderSpec(name="Authorization", env="WEATHER_API_KEY", format="Bearer {}")]
    policy = FetchPolicy(allow_private=True, allowed_secrets=frozenset({"WEATHER_API_KEY"}))
    result = hostile_feed(home.url + "/elsewhere", headers=secret, policy=policy).read(datetime.now(UTC))
    assert isinstance(result, FeedRefused), result
    assert f"redirects to another origin, {elsewhere.url}" in str(result)
    assert elsewhere.hits == []  # the value never came from there, and the key never went there
    # Within the feed's origin a redirect is followed, with its headers, and the source stays honest.
    same = hostile_feed(home.url + "/same-origin", headers=secret, policy=policy).read(datetime.now(UTC))
    assert isinstance(same, FeedValue)
    assert same.source == home.url
    assert home.hits[-2:] == ["/same-origin", "/value"]
    assert home.seen_headers[-1]["Authorization"] == "Bearer weather-key"


@pytest.mark.parametrize("path", ["/huge", "/huge-chunked", "/gzip-bomb"])
def test_answer_over_the_size_cap_is_refused(hostile, path: str) -> None:
    server = hostile()
    result = hostile_feed(server.url + path).read(datetime.now(UTC))
    assert isinstance(result, FeedRefused), result
    assert "over the limit of 1,048,576 bytes" in str(result)


def test_slow_drip_fails_the_feed_at_its_deadline(hostile) -> None:
    server = hostile()
    # Each byte comes well within timeout_s; only a deadline on the whole read can stop it.
    policy = FetchPolicy(allow_private=True, deadline_s=1.0)
    result = hostile_feed(server.url + "/drip", timeout_s=5.0, retries=3, policy=policy).read(datetime.now(UTC))
    assert isinstance(result, FeedUnreachable), result
    assert "no complete answer within the feed deadline of 1 s" in str(result)
    assert server.hits == ["/drip"]  # no retry after the deadline


def test_credentials_and_keys_in_the_url_never_reach_messages_or_the_source(hostile) -> None:
    server = hostile()
    keyed = server.url + "/v2/SECRET-PATH-KEY/value"
    missing = hostile_feed(keyed).read(datetime.now(UTC))
    assert isinstance(missing, FeedUnreachable)
    assert "HTTP 404 from " + server.url in str(missing)
    assert "SECRET" not in str(missing)
    with_user = hostile_feed(server.url.replace("http://", "http://user:hunter2@") + "/value").read(datetime.now(UTC))
    assert isinstance(with_user, FeedConfigError)
    assert "hunter2" not in str(with_user)
    assert server.hits == ["/v2/SECRET-PATH-KEY/value"]  # the one with a password was not sent


DEEP_READ = """
import sys
import web3  # py_ecc raises the recursion limit to 100000 as web3 loads
from datetime import UTC, datetime
from evolve.feeds.fetch import FetchPolicy
from evolve.feeds.http_json import HttpJsonFeed
result = HttpJsonFeed(name="w", url=sys.argv[1], path="a", policy=FetchPolicy(allow_private=True)).read(
    datetime.now(UTC)
)
print(type(result).__name__, result)
"""


def test_deeply_nested_body_fails_the_feed_and_the_process_survives(hostile) -> None:
    server = hostile()
    # In a process of its own: before the fix, json.loads overflowed the C stack (SIGSEGV, rc -11).
    done = subprocess.run(
        [sys.executable, "-c", DEEP_READ, server.url + "/deep"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert "FeedMalformed" in done.stdout
    assert "nests 100,000 levels deep, deeper than the 64 allowed" in done.stdout


@pytest.mark.parametrize("imports", ["import web3, contracts", "import contracts, web3", "import evolve.feeds"])
def test_recursion_limit_stays_sane_after_web3_is_imported(imports: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", f"{imports}; import sys; print(sys.getrecursionlimit())"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert int(done.stdout) <= 1000


def test_bounded_json_loader_checks_size_and_depth_before_parsing() -> None:
    assert load_json_bounded(b'{"a": ["[[[", {"b": 1}]}', max_bytes=100) == {"a": ["[[[", {"b": 1}]}
    assert json_depth(b'{"a": ["[[[\\"[[", {"b": 1}]}') == 3
    with pytest.raises(BoundedJSONError, match="over the limit of 10"):
        load_json_bounded(b"[1, 2, 3, 4, 5, 6]", max_bytes=10)
    with pytest.raises(BoundedJSONError, match="nests 5 levels deep, deeper than the 4 allowed"):
        load_json_bounded(b"[[[[[]]]]]", max_bytes=100, max_depth=4)
    with pytest.raises(BoundedJSONError, match="is not JSON"):
        load_json_bounded(b'["unterminated', max_bytes=100)
    # An unterminated string hides what follows from json.loads too: scanned once, not per quote.
    assert json_depth(b'"' + b'\\"' * 200_000) == 0


def test_urls_in_messages_and_logs_are_cut_to_their_origin() -> None:
    assert redact_url("https://user:pw@eth-mainnet.example.org:8443/v2/SECRET-KEY?key=X#f") == (
        "https://eth-mainnet.example.org:8443"
    )
    assert redact_url("not a url") == "<url>"
    requests_message = (
        "HTTPSConnectionPool(host='eth.example.org', port=443): Max retries exceeded with url: /v2/SECRET-KEY "
        "(Caused by NewConnectionError('https://eth.example.org/v2/SECRET-KEY'))"
    )
    assert "SECRET" not in redact_urls(requests_message)
    assert "eth.example.org" in redact_urls(requests_message)
    record = logging.LogRecord(
        "evolve.cycle", logging.WARNING, __file__, 1, "feed failed at %s", ("https://x.example/v2/SECRET-KEY",), None
    )
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "feed failed at https://x.example"


class EndlessDrip:
    """200 at once, then one byte a second, for ever: what hung `python -m evolve once` for good."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                with contextlib.suppress(OSError):  # until the reader hangs up
                    while True:
                        self.wfile.write(b" ")
                        self.wfile.flush()
                        time.sleep(1.0)

        self.httpd, self.url = start_http_server(Handler)

    def close(self) -> None:
        stop_http_server(self.httpd)


@pytest.mark.slow
def test_endless_drip_fails_one_feed_and_the_cycle_completes(open_studio, evolve_settings, tmp_path) -> None:
    from tests.fixtures.processes import evolve_cli, process_env

    drip = EndlessDrip()
    try:
        studio = open_studio()
        studio.settings.rules_dir.mkdir(parents=True, exist_ok=True)
        (studio.settings.rules_dir / "drip.toml").write_text(
            f"""\
[schedule]
every = "1h"

[feeds.drip]
type = "http_json"
url = "{drip.url}/weather"
path = "current.temperature"
timeout_s = 5

[feeds.clock]
type = "clock"

[traits.light]
input = "clock.part_of_day"
[[traits.light.cases]]
fragment = "soft light"
"""
        )
        env = process_env(evolve_settings, tmp_path, STUDIO_EVOLVE__FEED_DEADLINE_S="2")
        # Before the deadline existed this never returned (the subprocess timeout would fail the test).
        once = evolve_cli(env, "once", timeout=180)
    finally:
        drip.close()
    assert once.returncode == 0, once.stderr[-3000:]
    assert "drip: cycle" in once.stdout
    assert "feeds: clock=ok, drip=ERROR" in once.stdout
    assert f"feed drip: feed 'drip': {drip.url}: no complete answer within the feed deadline of 2 s" in once.stdout


def test_feed_settings_refuse_studio_variables_and_make_the_policy() -> None:
    from pydantic import ValidationError

    from studio.config import load_settings

    with pytest.raises(ValidationError, match="STUDIO_\\* variables hold the studio's own secrets"):
        load_settings(evolve={"feed_secrets": ["studio_chain__private_key"]})
    settings = load_settings(
        evolve={"feed_secrets": ["WEATHER_API_KEY"], "allow_private_feeds": True, "feed_deadline_s": 7}
    )
    policy = FetchPolicy.from_settings(settings.evolve)
    assert policy == FetchPolicy(
        allow_private=True, max_body_bytes=1 << 20, deadline_s=7.0, allowed_secrets=frozenset({"WEATHER_API_KEY"})
    )
    assert FetchPolicy.from_settings(load_settings().evolve).allow_private is False


def test_non_ascii_urls_are_sent_as_idna_and_percent_encoding() -> None:
    assert ascii_url("http://bücher.example:8080/ä?q=é&x=1") == "http://xn--bcher-kva.example:8080/%C3%A4?q=%C3%A9&x=1"
    assert ascii_url("https://api.example.org/v1?q=a") == "https://api.example.org/v1?q=a"
