"""The proxy's WebSocket protocols, pure: bytes or text in, typed frozen messages out, and back.

Nothing here does I/O: the proxy moves messages between these codecs and gRPC, and Python clients (the
tests, the load generators, the fuzz targets) speak the other direction with the same modules.
``docs/protocol.md`` describes the protocols byte by byte; each module's docstring maps its part:

* ``errors``: :class:`ProtocolError`, the only exception any parser raises (a gRPC status name as
  ``.code``, a ``.message`` safe to send, and the request's id when it could be read).
* ``fields``: what the three protocols share (``OutputMode``, ``Bounds``, ``Timings``, the limits).
* ``v1``: the seed's binary messages, on a connection without a subprotocol.
* ``json_messages``: text messages, on any connection.
* ``v2``: the subprotocol ``lipsync.v2``.
"""
