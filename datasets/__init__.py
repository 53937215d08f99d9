"""Datasets: the synthetic face world and real-data adapters (registered on import)."""
