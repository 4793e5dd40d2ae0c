"""The embedded local chain: anvil (npm `@foundry-rs/anvil-linux-amd64`, pinned) with crash-safe state.

Why the care: anvil's own `--state`/`--state-interval` saving rewrites the file in place, so a SIGKILL
at the wrong moment leaves a torn file that stops the next start, and nothing since the last save
survives. Here the studio saves instead. The chain client calls `checkpoint()` after every confirmed
transaction *before* reporting it confirmed, so "confirmed" means "persisted": it appends the blocks
mined since the last checkpoint (their raw signed transactions) to an append-only journal and fsyncs
it, a cost that does not grow with the chain (contracts/chainjournal.py). The whole state
(`anvil_dumpState`) is written atomically (temporary file, fsync, rename, fsync of the folder) only
when the journal has grown as large as it, on `stop()` and after a start replayed the journal.
anvil is started with PR_SET_PDEATHSIG, so it dies with the studio even on SIGKILL, and a stale anvil of
ours still holding the port (left by a crash on a system without that signal) is recognised by its pid
file and stopped before a new one starts.
"""

from __future__ import annotations

import contextlib
import ctypes
import gzip
import ipaddress
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from contracts.chainjournal import ChainJournal, JournalBlock
from contracts.errors import LocalChainBusyError, LocalChainError

STATE_FILE = "state.json"
JOURNAL_FILE = "journal.jsonl"
# The journal is folded into a full dump once it is this large and as large as the dump itself.
COMPACT_MIN_BYTES = 256 * 1024
PID_FILE = "anvil.pid"
LOG_FILE = "anvil.log"
LOCAL_CHAIN_ID = 31337
REPO_ROOT = Path(__file__).resolve().parent.parent

# anvil's default mnemonic ("test test ... junk"): well known, so only ever used on the local chain.
DEV_PRIVATE_KEYS: tuple[str, ...] = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
)

_PR_SET_PDEATHSIG = 1


def foundry_binary(tool: str) -> Path:
    """The platform's binary of a Foundry tool (anvil, forge) inside node_modules, where its npm
    package installed it; STUDIO_<TOOL>_BIN overrides. Not checked for existence."""
    override = os.environ.get(f"STUDIO_{tool.upper()}_BIN")
    if override:
        return Path(override)
    system = {"Linux": "linux", "Darwin": "darwin", "Windows": "win32"}.get(platform.system(), platform.system())
    machine = {"x86_64": "amd64", "AMD64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine(), platform.machine()
    )
    name = f"{tool}.exe" if system == "win32" else tool
    return REPO_ROOT / "node_modules" / "@foundry-rs" / f"{tool}-{system}-{machine}" / "bin" / name


def anvil_binary() -> Path:
    """The platform's anvil ELF inside node_modules (never the node wrapper: killing the wrapper
    would orphan the real anvil on its port)."""
    path = foundry_binary("anvil")
    if not path.exists():
        raise LocalChainError(
            f"anvil not found at {path}: run `make run` or `make test` (they run `npm ci`), "
            "or set STUDIO_ANVIL_BIN to an anvil 1.7 binary."
        )
    return path


def _die_with_parent() -> None:
    """preexec_fn: ask Linux to SIGKILL anvil when the studio process dies, however it dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


# anvil unlocks its dev accounts and answers `anvil_*` admin calls, so it listens on loopback only and
# with `--no-cors`: otherwise any web page the operator visits could send transactions or `anvil_reset`
# to 127.0.0.1:8545 from the browser.
def is_loopback_host(host: str) -> bool:
    """Whether `host` (a name or an address, IPv6 with or without brackets) can only be reached from this machine."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # any other name may resolve to a public address


def _fsync_dir(path: Path) -> None:
    if sys.platform.startswith("win"):
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalChain:
    """One anvil process whose state lives in `state_dir`.

    Usage: `with LocalChain(dir, port=0) as chain: rpc_url = chain.rpc_url`. `start()` restores the last
    checkpoint; `checkpoint()` persists everything mined so far; `stop()` checkpoints and stops anvil.
    """

    def __init__(
        self,
        state_dir: Path | str,
        host: str = "127.0.0.1",
        port: int = 8545,
        *,
        start_timeout_s: float = 30.0,
        rpc_timeout_s: float = 30.0,
    ) -> None:
        if not is_loopback_host(host):
            raise LocalChainError(
                f"refusing to start the embedded chain on {host!r}: it unlocks public dev accounts, so it listens "
                "on loopback only. Set STUDIO_CHAIN__LOCAL_HOST to 127.0.0.1 (the default), or use a real node "
                "with STUDIO_CHAIN__NETWORK=rpc and STUDIO_CHAIN__RPC_URL."
            )
        self.state_dir = Path(state_dir)
        self.host = host
        self.port = port
        self.start_timeout_s = start_timeout_s
        self.rpc_timeout_s = rpc_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._rpc_url: str | None = None
        self._lock = threading.Lock()
        self.journal = ChainJournal(self.state_dir / JOURNAL_FILE)
        self._journaled_block = 0  # the newest block the dump or the journal holds
        self.compact_min_bytes = COMPACT_MIN_BYTES

    # ----------------------------------------------------------------- properties

    @property
    def state_path(self) -> Path:
        return self.state_dir / STATE_FILE

    @property
    def rpc_url(self) -> str:
        if self._rpc_url is None:
            raise LocalChainError("the local chain is not running: call start() first.")
        return self._rpc_url

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # ----------------------------------------------------------------- life cycle

    def start(self) -> str:
        """Start anvil (restoring the last checkpoint, if any) and return its JSON-RPC URL."""
        if self.running:
            return self.rpc_url
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._stop_stale_anvil()
        binary = anvil_binary()
        args = [
            str(binary),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--chain-id",
            str(LOCAL_CHAIN_ID),
            "--hardfork",
            "cancun",
            "--no-cors",  # no Access-Control-Allow-Origin: web pages cannot drive the unlocked accounts
        ]
        if self.state_path.exists():
            args += ["--load-state", str(self.state_path)]
        log_path = self.state_dir / LOG_FILE
        with open(log_path, "wb") as log:  # a file, not a pipe: an unread pipe would block anvil
            self._process = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        pid_text = f"{self._process.pid}\n{binary}\n{os.getpid()}\n"
        (self.state_dir / PID_FILE).write_text(pid_text, encoding="utf-8")
        port = self._wait_listening(log_path)
        self._rpc_url = f"http://{self.host}:{port}"
        self._wait_rpc()
        self._replay_journal()
        return self._rpc_url

    def checkpoint(self) -> None:
        """Persist everything anvil has mined: the new blocks are appended to the journal and fsynced
        (a crash keeps all of them or, for a torn last line, none that was reported). The journal is
        folded into a full dump once it has grown as large as the dump."""
        with self._lock:
            if not self.running:
                raise LocalChainError("cannot checkpoint: the local chain is not running.")
            head = int(self._rpc("eth_blockNumber", []), 16)
            blocks = []
            for number in range(self._journaled_block + 1, head + 1):
                block = self._journal_block(number)
                if block is None:  # something a replay could not redo: keep the whole state instead
                    self._dump_state()
                    return
                blocks.append(block)
            self.journal.append(blocks)
            self._journaled_block = max(self._journaled_block, head)
            size = self.journal.size()
            if size >= self.compact_min_bytes and size >= _size(self.state_path):
                self._dump_state()

    def _journal_block(self, number: int) -> JournalBlock | None:
        block = self._rpc("eth_getBlockByNumber", [hex(number), False])
        raws = []
        for tx_hash in block["transactions"]:
            raw = self._rpc("eth_getRawTransactionByHash", [tx_hash])
            if not raw:
                return None
            raws.append(raw)
        return JournalBlock(int(block["number"], 16), int(block["timestamp"], 16), tuple(raws))

    def _dump_state(self) -> None:
        """The whole state, written atomically; then the journal it now holds is emptied. Caller holds the lock."""
        head = int(self._rpc("eth_blockNumber", []), 16)
        dumped = self._rpc("anvil_dumpState", [])
        data = bytes.fromhex(dumped.removeprefix("0x"))
        if data[:2] == b"\x1f\x8b":  # anvil gzips the dump; --load-state reads plain JSON
            data = gzip.decompress(data)
        tmp = self.state_path.with_suffix(".json.tmp")
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.state_path)
        _fsync_dir(self.state_dir)
        # Blocks mined while dumping may be in the dump and are journaled again later: a replay skips
        # the blocks the dump already has.
        self.journal.clear()
        self._journaled_block = head

    def _replay_journal(self) -> None:
        """Mine the journaled blocks again on top of the dump just loaded (same transactions, same
        timestamps), then fold them into a new dump."""
        blocks = self.journal.read()
        if not self.state_path.exists():
            if blocks:
                raise LocalChainError(
                    f"the chain journal {self.journal.path} has no state dump {self.state_path} to replay it on: "
                    "move the journal away to start an empty chain."
                )
            with self._lock:
                self._dump_state()  # the genesis block (its timestamp) is the base of every later replay
            return
        head = int(self._rpc("eth_blockNumber", []), 16)
        todo = [block for block in blocks if block.number > head]
        if todo:
            self._rpc("evm_setAutomine", [False])
            try:
                for block in todo:
                    for raw in block.transactions:
                        self._rpc("eth_sendRawTransaction", [raw])
                    # anvil's clock starts at "now" after a load: set it back to the block's own time.
                    self._rpc("evm_setTime", [block.timestamp])
                    self._rpc("evm_mine", [block.timestamp])
                    mined = int(self._rpc("eth_blockNumber", []), 16)
                    if mined != block.number:
                        raise LocalChainError(
                            f"replaying the chain journal {self.journal.path} gave block {mined} where it "
                            f"recorded block {block.number}: the state dump and the journal do not belong "
                            "together. Move the journal away to start from the dump alone."
                        )
            finally:
                self._rpc("evm_setTime", [max(int(time.time()), todo[-1].timestamp)])
                self._rpc("evm_setAutomine", [True])
        with self._lock:
            if blocks:
                self._dump_state()
            else:
                self._journaled_block = head

    def stop(self) -> None:
        """Checkpoint and stop anvil. Safe to call twice."""
        process = self._process
        if process is None:
            return
        try:
            if process.poll() is None:
                with contextlib.suppress(LocalChainError), self._lock:
                    self._dump_state()
        finally:
            if process.poll() is None:
                # Our checkpoint is the state of record; anvil has no --dump-state, so SIGTERM writes nothing.
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
            self._process = None
            self._rpc_url = None
            with contextlib.suppress(FileNotFoundError):
                (self.state_dir / PID_FILE).unlink()

    def __enter__(self) -> LocalChain:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ----------------------------------------------------------------- internals

    def _wait_listening(self, log_path: Path) -> int:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            text = log_path.read_text(encoding="utf-8", errors="replace")
            for line in text.splitlines():
                if line.startswith("Listening on "):
                    return int(line.rsplit(":", 1)[1])
            assert self._process is not None
            if self._process.poll() is not None:
                self._process = None
                if "Address already in use" in text or "address already in use" in text.lower():
                    raise LocalChainError(
                        f"port {self.port} on {self.host} is taken by another program: stop it, or set "
                        "STUDIO_CHAIN__LOCAL_PORT to a free port (0 picks one)."
                    )
                tail = "\n".join(text.splitlines()[-5:])
                raise LocalChainError(
                    f"anvil exited at start (log {log_path}):\n{tail}\nIf the state file is damaged, move "
                    f"{self.state_path} away to start an empty chain."
                )
            time.sleep(0.05)
        self.stop()
        raise LocalChainError(f"anvil did not start listening within {self.start_timeout_s:.0f} s (log {log_path}).")

    def _wait_rpc(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            try:
                self._rpc("eth_chainId", [], timeout=2.0)
                return
            except LocalChainError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _rpc(self, method: str, params: list[object], *, timeout: float | None = None) -> Any:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
        request = urllib.request.Request(  # noqa: S310 - a local http:// URL we built ourselves
            self.rpc_url, data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.rpc_timeout_s) as response:  # noqa: S310
                reply = json.loads(response.read())
        except (urllib.error.URLError, OSError, json.JSONDecodeError) as exc:
            raise LocalChainError(f"local chain RPC {method} failed: {exc}") from None
        if "error" in reply:
            raise LocalChainError(f"local chain RPC {method} failed: {reply['error']}")
        return reply["result"]

    def _stop_stale_anvil(self) -> None:
        """Stop an anvil left running by a previous studio process on this state folder.

        Its unsaved transactions were never reported confirmed, so the last checkpoint stays the truth.
        """
        pid_path = self.state_dir / PID_FILE
        try:
            pid_text, binary_text, owner_text = pid_path.read_text(encoding="utf-8").splitlines()[:3]
            pid, owner = int(pid_text), int(owner_text)
        except (FileNotFoundError, ValueError):
            return
        if _process_is(pid, binary_text):
            if owner != os.getpid() and _alive(owner):
                raise LocalChainBusyError(
                    f"the local chain in {self.state_dir} is already running, owned by process {owner}: "
                    "stop that studio first (two studios cannot share one data directory)."
                )
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while _process_is(pid, binary_text) and time.monotonic() < deadline:
                time.sleep(0.05)
        with contextlib.suppress(FileNotFoundError):
            pid_path.unlink()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _process_is(pid: int, binary: str) -> bool:
    """Whether `pid` is alive and runs `binary` (so a recycled pid of another program is left alone)."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return False
    # /proc names the resolved file: resolve ours too (node_modules may be a symlink).
    return exe.removesuffix(" (deleted)") in (binary, os.path.realpath(binary))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
