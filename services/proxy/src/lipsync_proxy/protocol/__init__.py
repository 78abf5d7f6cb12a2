"""The proxy's wire protocols, pure: bytes or text in, typed frozen messages out, and back.

Nothing here does I/O; the connection handler moves messages between these codecs and gRPC.
``docs/protocol.md`` is the byte-by-byte description; this is the map of the code.

Modules
-------
``errors``
    :class:`~lipsync_proxy.protocol.errors.ProtocolError` - the only exception any parser raises, with
    ``.code`` (a gRPC status name, ``"INVALID_ARGUMENT"`` for malformed input), ``.message`` (safe to
    send) and ``.request_id`` (the JSON ``"id"`` or v2 request id when it could be read, else None).
    ``GRPC_STATUS_CODES`` / ``GRPC_STATUS_NAMES``: the one table between status names (used in JSON)
    and numbers (used in v2).

``fields``
    Values shared by all three protocols: ``OutputMode`` (a ``StrEnum``: ``"full_frame"`` /
    ``"face_crop"``; ``.wire`` is the v2 byte, equal to the proto's ``lipsync.v1.OutputMode`` number),
    the ``Bounds`` and ``Timings`` named tuples (same fields and order as the proto messages), and the
    limits ``MAX_FRAME_ID`` (2**31 - 1), ``MAX_MODEL_NAME_BYTES`` (255), ``SAMPLE_RATE`` (16000).

``v1`` - the seed's binary messages, used when a client offers no subprotocol
    ``decode_request(data: bytes)`` tells the two request layouts apart by shape and returns
    ``FrameRequest(model_name, frame_id)`` (the seed README's ``[u8 name_len][name][u32 frame_id LE]``,
    answered by the bare JPEG) or ``CropRequest(model_name, frame_id, audio)`` (the seed code's
    ``[u32 name_len][name][u32 frame_id][u32 audio_len][audio]``, answered by
    ``encode_crop_reply(frame_id, processing_ms, image, bounds)``); ``encode_request`` is the inverse.
    ``encode_video_frame(frame_id, video_type, image)`` is the binary ``get_video_frame`` answer after
    ``switch_to_binary``; ``decode_crop_reply`` and ``decode_video_frame`` read both replies for
    clients and tests. A failure is the text message ``json_messages.error_reply(...)``.

``json_messages`` - text messages on any connection
    ``parse(text: str | bytes) -> JsonRequest``, one of ``InferenceRequest(id, model_name, frame_id,
    include_image, output_mode, traceparent)``, ``ListModelsRequest(id)``,
    ``GetMetadataRequest(id, model_name)``, ``GetVideoFrameRequest(id, model_name, frame_id,
    video_type)``, ``GetAudioRequest(id, model_name)``, ``BinaryProbe(id, switch)`` (the seed's
    ``switch_to_binary`` / ``test_binary``), ``PingRequest(id)``. ``id`` is the client's ``"id"``
    (str, int or None), to echo. Reply builders return compact JSON text: ``inference_reply``,
    ``inference_error``, ``model_list_reply``, ``metadata_reply``, ``video_frame_reply``,
    ``audio_reply``, ``pong``, ``protocol_ack`` and ``error_reply``.

``v2`` - subprotocol ``lipsync.v2`` (``v2.SUBPROTOCOL``), binary frames with request ids
    ``decode_client(data: bytes) -> ClientMessage``, one of ``InferRequest`` (one frame, optional
    ``AudioWindow``), ``Cancel``, ``SessionStart`` / ``SessionAudio`` / ``SessionControl`` (the
    ``Speak`` RPC) and ``Credit`` (session flow control); ``encode_client(message) -> bytes``.
    Server messages from plain values, image last so the reply is ``fixed + image``:
    ``encode_frame(request_id, frame_id, output_mode, bounds, width, height, timings, image)``,
    ``encode_session_frame(request_id, sequence, audio_time_ms, end_of_utterance, frame_id,
    output_mode, bounds, width, height, timings, image)``, ``encode_error(request_id, code, message)``
    and ``encode_session_end(request_id, code="OK", message="")``; ``decode_server(data) ->
    ServerMessage`` (``FrameReply``, ``ErrorReply``, ``SessionFrame``, ``SessionEnd``) and its inverse
    ``encode_server(message) -> bytes`` for clients and tests. Video output: ``SessionStart``'s
    ``video_codecs`` (``VideoCodec``) and ``play``, ``KeyFrameRequest``, and from the server
    ``encode_video_config`` / ``encode_video_chunk`` (``VideoConfig``, ``VideoChunk``), the chunk's
    bytes as the server's encoder made them. The rules the connection handler
    enforces (one reply per INFER, credits, cancel) are in ``docs/protocol.md``, section "Rules the
    proxy enforces".
"""
