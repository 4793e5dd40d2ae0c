"""Generative collections: the spec and the seeded draw of traits.

Pure; the service is studio/services/collections.py."""
