"""Feeds against real sources: an HTTP server on 127.0.0.1 and the clock in real timezones."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler

import pytest

from evolve.errors import FeedConfigError, FeedMalformed, FeedStale, FeedUnreachable, FeedValueInvalid
from evolve.feeds.base import FeedValue
from evolve.feeds.clock import ClockFeed
from evolve.feeds.http_json import HeaderSpec, HttpJsonFeed
from tests.evolve.conftest import send_json, start_http_server, stop_http_server


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


def feed(server: FeedServer, path: str, **options: object) -> HttpJsonFeed:
    defaults: dict[str, object] = {"timeout_s": 5.0, "retries": 0, "backoff_s": 0.05}
    return HttpJsonFeed(name="weather", url=server.url + path, path="current.temperature", **{**defaults, **options})


def test_good_feed_returns_value_with_source_and_times(feed_server: FeedServer) -> None:
    result = feed(feed_server, "/good", timestamp_path="current.time", max_age_s=600).read(datetime.now(UTC))
    assert isinstance(result, FeedValue)
    assert result.value == 21.5
    assert result.source == feed_server.url + "/good"
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
    missing = HttpJsonFeed(name="w", url=feed_server.url + "/good", path="current.humidity").read(datetime.now(UTC))
    assert isinstance(missing, FeedMalformed)
    assert "no 'current.humidity'" in str(missing)
    by_index = HttpJsonFeed(name="w", url=feed_server.url + "/good", path="list.1").read(datetime.now(UTC))
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
    result = HttpJsonFeed(name="w", url="http://127.0.0.1:9/x", path="a", timeout_s=1, retries=1, backoff_s=0.01).read(
        datetime.now(UTC)
    )
    assert isinstance(result, FeedUnreachable)
    assert "cannot connect" in str(result)


def test_header_secret_comes_from_environment_and_is_never_in_the_snapshot(
    feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = HeaderSpec(name="Authorization", env="WEATHER_TOKEN", format="Bearer {}")
    unset = feed(feed_server, "/auth", headers=[spec]).read(datetime.now(UTC))
    assert isinstance(unset, FeedConfigError)
    assert "WEATHER_TOKEN" in str(unset)
    monkeypatch.setenv("WEATHER_TOKEN", "s3cret-token")
    result = feed(feed_server, "/auth", headers=[spec]).read(datetime.now(UTC))
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
    good = feed(feed_server, "/good", params=[HeaderSpec(name="appid", env="OWM_KEY"), HeaderSpec("units", "metric")])
    result = good.read(datetime.now(UTC))
    assert isinstance(result, FeedValue)
    assert "/good?appid=q-secret-42&units=metric" in feed_server.hits
    assert "q-secret" not in json.dumps(result.to_json())
