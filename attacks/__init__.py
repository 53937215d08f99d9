"""Attacks: one file per attack, shared building blocks in ``priors/`` (registered on import)."""
