"""Solidity sources, compiled artifacts, the Python chain client and the embedded local chain."""

import contextlib
import sys

# web3 imports py_ecc, whose import raises the process recursion limit to 100,000. Python frames then
# outgrow the C stack before a RecursionError: deeply nested JSON or TOML segfaults the whole studio
# (web app and scheduler) instead of failing one document. Import it here, before any web3 import of
# ours, and put the limit back; outside JSON is also depth-checked (metadata/jsonsafe.py).
_limit = sys.getrecursionlimit()
with contextlib.suppress(ImportError):
    import py_ecc  # noqa: F401
sys.setrecursionlimit(1000 if _limit >= 100_000 else _limit)
