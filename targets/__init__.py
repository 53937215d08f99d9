"""Target model zoo: architectures, heads, training and checkpoint formats."""
