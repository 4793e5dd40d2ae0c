"""Fixtures of the evolution tests.

- `evolve_anvil`: one anvil for this test module's feed tests (LocalChain, port 0, tmp state).
- `evolve_signer(index)`: a Signer for anvil dev account `index` on it.
- `deploy_aggregator(signer, decimals, answer)`: Chainlink's MockV3Aggregator, deployed from its
  committed artifact; tests read it only through AggregatorV3Interface.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from eth_abi import encode as abi_encode
from web3 import Web3

from contracts.artifacts import load_artifact
from contracts.localchain import DEV_PRIVATE_KEYS, LOCAL_CHAIN_ID, LocalChain
from contracts.signer import RevertDecoder, Signer, make_web3


def start_http_server(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, str]:
    """A real HTTP server on 127.0.0.1 (a free port) serving `handler` from a thread, and its base URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


def stop_http_server(httpd: ThreadingHTTPServer) -> None:
    httpd.shutdown()
    httpd.server_close()


def send_json(handler: BaseHTTPRequestHandler, status: int, body: bytes) -> None:
    """Answer the request being handled with a JSON body."""
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@pytest.fixture(scope="module")
def evolve_anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalChain]:
    chain = LocalChain(Path(tmp_path_factory.mktemp("evolve-anvil")), port=0)
    chain.start()
    yield chain
    chain.stop()


@pytest.fixture
def evolve_signer(evolve_anvil: LocalChain) -> Callable[[int], Signer]:
    def make(index: int = 0) -> Signer:
        return Signer.from_private_key(
            make_web3(evolve_anvil.rpc_url), DEV_PRIVATE_KEYS[index], chain_id=LOCAL_CHAIN_ID
        )

    return make


def deploy_aggregator(signer: Signer, decimals: int, answer: int) -> str:
    """Deploy MockV3Aggregator(decimals, answer); returns its address."""
    artifact = load_artifact("MockV3Aggregator")
    data = artifact.bytecode + abi_encode(["uint8", "int256"], [decimals, answer]).hex()
    result = signer.send({"data": data}, RevertDecoder(artifact.abi))
    return Web3.to_checksum_address(signer.receipt(result.tx_hash)["contractAddress"])


def call_aggregator(signer: Signer, address: str, function: str, *args: object) -> None:
    """Operate the mock (updateAnswer / updateRoundData): what a Chainlink node's report does."""
    artifact = load_artifact("MockV3Aggregator")
    contract = signer.w3.eth.contract(address=address, abi=artifact.abi)
    data = contract.encode_abi(function, args=list(args))
    signer.send({"to": address, "data": data}, RevertDecoder(artifact.abi))


class ValueServer:
    """A JSON weather API on 127.0.0.1 whose temperature the test sets: `server.value = -5`."""

    def __init__(self) -> None:
        import json
        from datetime import UTC, datetime

        self.value: float = 10.0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                body = json.dumps(
                    {"current": {"temperature": server.value, "time": datetime.now(UTC).isoformat()}}
                ).encode()
                send_json(self, 200, body)

        self.httpd, base_url = start_http_server(Handler)
        self.url = f"{base_url}/weather"

    def close(self) -> None:
        stop_http_server(self.httpd)


@pytest.fixture
def weather_api() -> Iterator[ValueServer]:
    server = ValueServer()
    yield server
    server.close()


def weather_rules(url: str, every: str = "1h") -> str:
    """A collection that reacts to the temperature: three cases, one fragment each."""
    return f"""\
[schedule]
every = "{every}"

[evolution]
prompt = "{{prompt}}, {{weather}}"
strength = 0.5

[feeds.temperature]
type = "http_json"
url = "{url}"
path = "current.temperature"
timestamp_path = "current.time"
max_age_s = 600
timeout_s = 5
retries = 1
min = -90
max = 60

[traits.weather]
input = "temperature"
[[traits.weather.cases]]
below = 0
fragment = "frozen"
[[traits.weather.cases]]
below = 25
fragment = "mild"
[[traits.weather.cases]]
fragment = "scorching"
"""


def mint_living(studio, count: int, rules_name: str = "weather") -> list[int]:
    """Mint `count` living tokens through the studio's own services (draft, publish, mint)."""
    from studio.services.drafts import create_draft
    from studio.services.minting import mint_draft

    token_ids = []
    for index in range(count):
        draft = create_draft(studio, prompt=f"a lighthouse {index}", seed=100 + index, width=64, height=64)
        outcome = mint_draft(
            studio,
            draft.draft.id,
            name=f"Lighthouse {index}",
            recipient=studio.chain.address,
            living=True,
            rules_name=rules_name,
        )
        token_ids.append(outcome.token_id)
    return token_ids


@pytest.fixture
def evolve_settings(chain_settings, tiny_model_settings):
    """Settings on the session anvil (as a remote network) with the tiny model; feeds may reach the
    test servers on 127.0.0.1 (allow_private_feeds)."""
    evolve = chain_settings.evolve.model_copy(update={"allow_private_feeds": True})
    return chain_settings.model_copy(update={"model": tiny_model_settings, "evolve": evolve})


@pytest.fixture
def open_studio(evolve_settings):
    """`open_studio(settings=None)` -> a Studio (closed after the test)."""
    from studio.services.studio import Studio

    opened = []

    def make(settings=None):
        studio = Studio.open(settings or evolve_settings)
        opened.append(studio)
        studio.start_chain()
        return studio

    yield make
    for studio in opened:
        studio.close()


class FlakyProxy:
    """A real HTTP reverse proxy on 127.0.0.1 in front of a service (anvil's RPC, Pinata's stand-in)
    that goes down on command, to cut a service off in the middle of a cycle:

    - `fail_after = n`: forward n more requests, then answer 503 to everything;
    - `drop_on = ("eth_sendRawTransaction", "after")`: forward the first request whose body contains
      the text, lose its answer (503) and stay down: the transaction went out, the caller never knew;
      with "before" it is never forwarded;
    - `before_forward = ("eth_sendRawTransaction", action)`: run `action()` once, right before the first
      request whose body contains the text is forwarded (another actor moving in between two steps);
    - `stall_on = ("eth_estimateGas", skip, count, seconds)`: forward `skip` requests whose body
      contains the text, then hold the next `count` ones `seconds` each before forwarding them (a
      node that stalls for a while, through web3's retries);
    - `up()`: service restored.
    """

    def __init__(self, target: str) -> None:
        import threading
        import time
        from http.server import BaseHTTPRequestHandler

        import httpx

        self.target = target.rstrip("/")
        self.down = False
        self.fail_after: int | None = None
        self.drop_on: tuple[str, str] | None = None
        self.before_forward: tuple[str, Callable[[], None]] | None = None
        self.stall_on: tuple[str, int, int, float] | None = None
        self.forwarded = 0
        self._lock = threading.Lock()
        proxy = self
        client = httpx.Client(timeout=30)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _refuse(self) -> None:
                send_json(self, 503, b'{"error": "service unavailable (test outage)"}')

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                lose_answer = False
                action = None
                with proxy._lock:
                    if proxy.before_forward and proxy.before_forward[0].encode() in body:
                        action, proxy.before_forward = proxy.before_forward[1], None
                if action is not None:
                    action()
                stall = 0.0
                with proxy._lock:
                    if proxy.down:
                        return self._refuse()
                    if proxy.stall_on and proxy.stall_on[0].encode() in body:
                        text, skip, count, seconds = proxy.stall_on
                        if skip > 0:
                            proxy.stall_on = (text, skip - 1, count, seconds)
                        else:
                            stall = seconds
                            proxy.stall_on = (text, 0, count - 1, seconds) if count > 1 else None
                    if proxy.drop_on and proxy.drop_on[0].encode() in body:
                        proxy.down = True
                        if proxy.drop_on[1] == "before":
                            return self._refuse()
                        lose_answer = True
                    if proxy.fail_after is not None:
                        if proxy.fail_after <= 0:
                            proxy.down = True
                            return self._refuse()
                        proxy.fail_after -= 1
                    proxy.forwarded += 1
                if stall:
                    time.sleep(stall)
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "connection")
                }
                answer = client.request(self.command, proxy.target + self.path, content=body, headers=headers)
                if lose_answer:
                    return self._refuse()
                self.send_response(answer.status_code)
                for key, value in answer.headers.items():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)
                return None

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self._client = client
        self.httpd, self.url = start_http_server(Handler)

    def up(self) -> None:
        with self._lock:
            self.down, self.fail_after, self.drop_on, self.stall_on = False, None, None, None

    def close(self) -> None:
        stop_http_server(self.httpd)
        self._client.close()


@pytest.fixture
def flaky_proxy() -> Iterator[Callable[[str], FlakyProxy]]:
    made: list[FlakyProxy] = []

    def make(target: str) -> FlakyProxy:
        proxy = FlakyProxy(target)
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.close()
