"""SuperScalar: laddered timeout-tree Decker-Wattenhofer channel factories."""

__version__ = "0.1.0"
