"""nfp: a durable orchestrator for network functions."""

__version__ = "0.1.0"
