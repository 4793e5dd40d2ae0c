"""The local /ipfs/ gateway under 8 concurrent clients: requests/s for a small JSON, MB/s for a 5 MiB image.

The gateway runs as its own process (`python -m metadata gateway`, real uvicorn on 127.0.0.1) so
the clients do not share its interpreter. Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from metadata.store import LocalStore  # noqa: E402

CLIENTS = 8
JSON_REQUESTS_PER_CLIENT = 250
IMAGE_REQUESTS_PER_CLIENT = 6
IMAGE_BYTES = 5 * 1024 * 1024


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def hammer(url: str, per_client: int, expected: int) -> float:
    def client(_: int) -> None:
        with httpx.Client(timeout=30) as http:
            for _ in range(per_client):
                response = http.get(url)
                if response.status_code != 200 or len(response.content) != expected:
                    raise RuntimeError(f"bad answer {response.status_code} from {url}")

    start = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(client, range(CLIENTS)))
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        store = LocalStore(data_dir / "ipfs", max_file_bytes=IMAGE_BYTES * 2)
        token = json.dumps({"name": "Living #1", "image": "ipfs://bafy/1.png", "attributes": []}).encode()
        json_cid = store.add_bytes(token)
        image_cid = store.add_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(IMAGE_BYTES - 8))
        port = free_port()
        env = {**os.environ, "STUDIO_CONFIG": str(Path(tmp) / "none.toml")}
        server = subprocess.Popen(
            [sys.executable, "-m", "metadata", "gateway", "--port", str(port), "--data-dir", str(data_dir)],
            cwd=tmp,
            env={**env, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{port}/ipfs"
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(f"{base}/{json_cid}", timeout=1).raise_for_status()
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise RuntimeError("the gateway did not start") from None
                    time.sleep(0.1)
            json_s = hammer(f"{base}/{json_cid}", JSON_REQUESTS_PER_CLIENT, len(token))
            image_s = hammer(f"{base}/{image_cid}", IMAGE_REQUESTS_PER_CLIENT, IMAGE_BYTES)
        finally:
            server.terminate()
            server.wait(timeout=10)
    print(
        json.dumps(
            {
                "bench": "gateway",
                "clients": CLIENTS,
                "json_requests_per_s": round(CLIENTS * JSON_REQUESTS_PER_CLIENT / json_s, 1),
                "image_5mib_mb_s": round(CLIENTS * IMAGE_REQUESTS_PER_CLIENT * IMAGE_BYTES / 1e6 / image_s, 1),
                "cpu_cores": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
