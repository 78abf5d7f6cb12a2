"""gRPC lip-sync inference server."""

__version__ = "0.1.0"
