"""Command line: `python -m metadata cid PATH [--v0]` and `python -m metadata gateway`.

`cid` prints what `ipfs add --only-hash --cid-version=1` (or, with --v0, plain `ipfs add`) would
print for a file or a folder, so content can be checked before and after pinning. `gateway` serves
the studio's local IPFS store at http://HOST:PORT/ipfs/<cid> without the rest of the studio.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from metadata.errors import ContentError


def _cid(args: argparse.Namespace) -> int:
    from metadata.cid import cid_for_path

    print(cid_for_path(Path(args.path), version=0 if args.v0 else 1))
    return 0


def _gateway(args: argparse.Namespace) -> int:
    import uvicorn

    from metadata.gateway import create_standalone_app
    from metadata.store import LocalStore, StoreOptions
    from studio.config import load_settings

    overrides = {"data_dir": Path(args.data_dir)} if args.data_dir else {}
    settings = load_settings(**overrides)
    settings.ensure_dirs()
    store = LocalStore.from_options(StoreOptions(root=settings.ipfs_dir, max_file_bytes=settings.ipfs.max_file_bytes))
    print(f"Serving {store.root} at http://{args.host}:{args.port}/ipfs/<cid>", file=sys.stderr)
    uvicorn.run(create_standalone_app(store), host=args.host, port=args.port, log_level="warning")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metadata", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    cid = commands.add_parser("cid", help="print the CID of a file or folder, as `ipfs add --only-hash` does")
    cid.add_argument("path", help="file or folder")
    cid.add_argument("--v0", action="store_true", help="CIDv0 (Qm...) as plain `ipfs add` gives, instead of CIDv1")
    cid.set_defaults(run=_cid)
    gateway = commands.add_parser("gateway", help="serve the local IPFS store at /ipfs/<cid>")
    gateway.add_argument("--host", default="127.0.0.1")
    gateway.add_argument("--port", type=int, default=8080)
    gateway.add_argument("--data-dir", help="the studio's data directory (default: settings.data_dir)")
    gateway.set_defaults(run=_gateway)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except ContentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
