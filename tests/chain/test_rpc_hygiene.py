"""An RPC URL's API key never leaves it (messages, logs, the public gallery), and a hostile RPC endpoint's
answer cannot crash the process. The endpoints are real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from contracts.errors import ChainError, RPCUnavailableError
from contracts.signer import make_web3, rpc_call
from contracts.urls import redact_url
from tests.fixtures.http import start_http_server, stop_http_server
from tests.fixtures.paths import REPO_ROOT

KEY = "SECRET-API-KEY-0123456789"


class RPCStandIn:
    """A JSON-RPC endpoint answering eth_chainId with 31337, or (`hostile = True`) with an answer nested
    `depth` levels deep, as a broken or malicious public node could."""

    def __init__(self) -> None:
        self.hostile = False
        self.depth = 200_000
        self.paths: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.paths.append(self.path)
                if outer.hostile:
                    body = b'{"jsonrpc":"2.0","id":%d,"result":' % request["id"]
                    body += b"[" * outer.depth + b"]" * outer.depth + b"}"
                else:
                    body = json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": "0x7a69"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server, self.base = start_http_server(Handler)

    def close(self) -> None:
        stop_http_server(self.server)


@pytest.fixture
def rpc_standin() -> Iterator[RPCStandIn]:
    server = RPCStandIn()
    yield server
    server.close()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://eth-mainnet.example/v2/KEY", "https://eth-mainnet.example"),
        ("https://user:pw@rpc.example:8545/path?apikey=KEY#frag", "https://rpc.example:8545"),
        ("http://[::1]:8545/KEY", "http://[::1]:8545"),
        ("wss://rpc.example/ws/KEY", "wss://rpc.example"),
        ("not a url KEY", "<url>"),
    ],
)
def test_redact_url_keeps_only_scheme_and_host(url, shown) -> None:
    assert redact_url(url) == shown
    assert "KEY" not in redact_url(url)


@pytest.mark.parametrize(
    "url",
    [f"http://127.0.0.1:9/v2/{KEY}", f"http://127.0.0.1:9/?apikey={KEY}", f"http://user:{KEY}@127.0.0.1:9/"],
)
def test_an_unreachable_rpc_error_names_the_host_but_never_the_key(url) -> None:
    w3 = make_web3(url, 5)
    with pytest.raises(RPCUnavailableError) as failed:
        rpc_call(w3, lambda: w3.eth.chain_id)
    assert KEY not in str(failed.value)
    assert "http://127.0.0.1:9" in str(failed.value)


def test_debug_logs_never_show_the_key(rpc_standin, caplog) -> None:
    w3 = make_web3(f"{rpc_standin.base}/v2/{KEY}?apikey={KEY}", 5)
    with caplog.at_level(logging.DEBUG):
        assert rpc_call(w3, lambda: w3.eth.chain_id) == 31337
    assert rpc_standin.paths == [f"/v2/{KEY}?apikey={KEY}"]  # the key still goes to its own endpoint
    assert caplog.records, "web3 and urllib3 log requests at DEBUG: the test needs their records"
    assert KEY not in caplog.text


HOSTILE_CHILD = textwrap.dedent(
    """
    import sys
    import web3  # raises the recursion limit to 100000, as in the studio
    from contracts.errors import ChainError
    from contracts.signer import make_web3, rpc_call

    w3 = make_web3(sys.argv[1], 30)
    try:
        rpc_call(w3, lambda: w3.eth.chain_id)
    except ChainError as exc:
        print("refused:", exc)
    """
)


def test_a_deeply_nested_rpc_answer_is_refused_not_a_crash(rpc_standin) -> None:
    rpc_standin.hostile = True
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", HOSTILE_CHILD, f"{rpc_standin.base}/v2/{KEY}"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=REPO_ROOT,
    )
    assert done.returncode == 0, f"rc {done.returncode}: {done.stderr[-2000:]}"
    assert "refused:" in done.stdout
    assert "200,001 levels deep" in done.stdout  # the answer object around the nested result
    assert KEY not in done.stdout


def test_a_deeply_nested_rpc_answer_fails_one_read_in_process(rpc_standin) -> None:
    rpc_standin.hostile = True
    w3 = make_web3(rpc_standin.base, 30)
    with pytest.raises(ChainError, match="levels deep"):
        rpc_call(w3, lambda: w3.eth.chain_id)
    rpc_standin.hostile = False
    assert rpc_call(w3, lambda: w3.eth.chain_id) == 31337  # the next answer is read normally
