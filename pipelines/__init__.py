"""Tsunagari: the annual evaluation pipeline for Japan's loneliness and isolation policy.

Stages (one module each): ingest -> validate -> indicators -> reports -> site.
"""

__version__ = "0.1.0"
