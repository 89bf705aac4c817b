"""Retrieval quality: metrics, the held-out split, the core.evaluate command."""
