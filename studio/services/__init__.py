"""Services the UI and the evolution engine call: drafts, publishing, minting, tokens."""
