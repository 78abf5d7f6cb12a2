"""WebSocket <-> gRPC proxy for the lip-sync server (the `lipsync-proxy` command)."""
