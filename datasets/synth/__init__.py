"""The built-in synthetic face world (design.md §3)."""
