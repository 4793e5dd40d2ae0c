"""Solidity sources, compiled artifacts, the Python chain client and the embedded local chain."""
