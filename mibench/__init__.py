"""mibench: an open benchmark suite for model-inversion attacks against face recognition."""

__version__ = "0.1.0"
