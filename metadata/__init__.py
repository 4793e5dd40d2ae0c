"""Token and collection metadata, CIDs, pinning backends and the /ipfs/ gateway."""
