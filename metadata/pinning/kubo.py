"""A Kubo node's RPC API, for users who run their own IPFS node.

Content is added with `cid-version=1&raw-leaves=true&pin=false`, the returned CID is compared with
the one computed locally, and only then pinned with `/api/v0/pin/add`: a node that hashes
differently never gets a pin the studio would then rely on. Kubo's RPC takes POST for everything.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import quote

import httpx

from metadata.errors import ContentReadError, PinningError
from metadata.pinning.base import BackendHealth, PinningBackend, PinResult
from metadata.pinning.http import MultipartBody, Part, RetryPolicy, send

FIX_AUTH = "Kubo's RPC refused access: check ipfs.kubo_api_url and the node's API.Authorizations."
ADD_PARAMS = {"cid-version": "1", "raw-leaves": "true", "pin": "false", "progress": "false"}


class KuboPinning(PinningBackend):
    name = "kubo"

    def __init__(
        self,
        api_url: str = "http://127.0.0.1:5001",
        timeouts: httpx.Timeout | None = None,
        retries: RetryPolicy | int = 2,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.timeouts = timeouts or httpx.Timeout(connect=10.0, read=120.0, write=120.0, pool=10.0)
        self.policy = retries if isinstance(retries, RetryPolicy) else RetryPolicy(retries=retries)

    def _call(
        self, client: httpx.Client, command: str, *, params: dict[str, str], body: MultipartBody | None = None
    ) -> httpx.Response:
        url = f"{self.api_url}/api/v0/{command}"

        def attempt() -> httpx.Response:
            if body is None:
                return client.post(url, params=params)
            # A fresh pass over the body on every attempt: a retry re-sends it whole.
            headers = {"Content-Type": body.content_type, "Content-Length": str(body.length)}
            return client.post(url, params=params, content=iter(body), headers=headers)

        return send("Kubo", attempt, self.policy, fix_auth=FIX_AUTH)

    def _add(self, parts: list[Part], root_name: str, expected_cid: str | None, what: str) -> PinResult:
        body = MultipartBody(parts)
        with httpx.Client(timeout=self.timeouts) as client:
            response = self._call(client, "add", params=ADD_PARAMS, body=body)
            entries = []
            for line in response.text.splitlines():
                if line.strip():
                    try:
                        entries.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise PinningError(f"Kubo's add answer is not NDJSON: {line[:200]!r}") from exc
            root = next((e for e in reversed(entries) if e.get("Name") == root_name), entries[-1] if entries else None)
            if not root or not isinstance(root.get("Hash"), str):
                raise PinningError(f"Kubo's add answer names no CID for {root_name!r}: {response.text[:300]!r}")
            cid = root["Hash"]
            self._check(cid, expected_cid, what)
            pinned = self._call(client, "pin/add", params={"arg": cid}).json()
            if cid not in pinned.get("Pins", []):
                raise PinningError(f"Kubo did not confirm the pin of {cid}: {json.dumps(pinned)[:300]}")
        return PinResult(cid, self.name, int(root.get("Size") or 0), root_name)

    def pin_bytes(self, data: bytes, *, name: str, expected_cid: str | None = None) -> PinResult:
        part = Part("file", bytes(data), filename=quote(name, safe=""), content_type="application/octet-stream")
        return self._add([part], name, expected_cid, name)

    def pin_file(self, path: str | os.PathLike[str], *, expected_cid: str | None = None) -> PinResult:
        target = Path(path)
        if not target.is_file():
            raise ContentReadError(f"{target} does not exist or is not a regular file: check the path")
        part = Part("file", target, filename=quote(target.name, safe=""), content_type="application/octet-stream")
        return self._add([part], target.name, expected_cid, str(target))

    def pin_directory(self, path: str | os.PathLike[str], *, expected_cid: str | None = None) -> PinResult:
        root = Path(path)
        if not root.is_dir():
            raise ContentReadError(f"{root} does not exist or is not a folder: check the path")
        parts = [Part("file", b"", filename=quote(root.name, safe=""), content_type="application/x-directory")]

        def walk(folder: Path) -> None:
            for child in sorted(folder.iterdir()):
                if child.name.startswith("."):
                    continue
                if child.is_symlink():
                    raise ContentReadError(f"{child} is a symbolic link; copy the file it points to instead")
                rel = quote(f"{root.name}/{child.relative_to(root).as_posix()}", safe="")
                if child.is_dir():
                    parts.append(Part("file", b"", filename=rel, content_type="application/x-directory"))
                    walk(child)
                elif child.is_file():
                    parts.append(Part("file", child, filename=rel, content_type="application/octet-stream"))

        walk(root)
        return self._add(parts, root.name, expected_cid, str(root))

    def health(self) -> BackendHealth:
        try:
            with httpx.Client(timeout=self.timeouts) as client:
                version = send(
                    "Kubo",
                    lambda: client.post(f"{self.api_url}/api/v0/version"),
                    RetryPolicy(retries=0),
                    fix_auth=FIX_AUTH,
                ).json()
        except (PinningError, ValueError) as exc:
            return BackendHealth(self.name, False, str(exc))
        return BackendHealth(self.name, True, f"kubo {version.get('Version', '?')} at {self.api_url}")
