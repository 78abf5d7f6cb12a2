"""`GET /models/{name}/base-video?codec=h264`: a model's base video, for pages that play video sessions.

The server encodes the file once per model and codec (its `GetBaseVideo`); the proxy keeps the last few
in memory and asks the server, with the etag it holds, whether its copy is still current, which costs
the server a hash and no encoding. The plain URL answers with a redirect to the same URL plus
`&v=<etag>`, never cached, and that versioned URL with the file, cacheable for a year and immutable
(browsers and nginx keep it; a changed package has another etag, hence another URL). A versioned URL
whose etag is no longer current redirects to the current one.
"""

from __future__ import annotations

import asyncio
import http
import logging
import urllib.parse
from collections import OrderedDict
from dataclasses import dataclass, field

import grpc

from lipsync_protos.lipsync.v1 import lipsync_pb2, lipsync_pb2_grpc
from lipsync_proxy.backends import BackendPool
from lipsync_proxy.errors import BackendError, rpc_error

logger = logging.getLogger(__name__)

PREFIX = "/models/"
SUFFIX = "/base-video"
CODECS = {
    "h264": lipsync_pb2.VIDEO_CODEC_H264,
    "vp8": lipsync_pb2.VIDEO_CODEC_VP8,
    "vp9": lipsync_pb2.VIDEO_CODEC_VP9,
    "av1": lipsync_pb2.VIDEO_CODEC_AV1,
}
CONTENT_TYPE = "application/vnd.lipsync.base-video"
IMMUTABLE = "public, max-age=31536000, immutable"
#: The first request of a model encodes its video on the server: seconds, not milliseconds.
TIMEOUT_S = 120.0
#: Files kept in memory (a 720p file is 1-2 MB).
KEEP = 8

_HTTP_STATUS = {
    "NOT_FOUND": http.HTTPStatus.NOT_FOUND,
    "INVALID_ARGUMENT": http.HTTPStatus.BAD_REQUEST,
    "UNAVAILABLE": http.HTTPStatus.SERVICE_UNAVAILABLE,
    "RESOURCE_EXHAUSTED": http.HTTPStatus.SERVICE_UNAVAILABLE,
}


@dataclass(frozen=True)
class Answer:
    """What the route answers (the HTTP layer writes it): `headers` are those besides the usual."""

    status: http.HTTPStatus
    body: bytes
    content_type: str
    cache: str
    headers: list[tuple[str, str]] = field(default_factory=list)


def _text(status: http.HTTPStatus, message: str) -> Answer:
    return Answer(status, message.encode() + b"\n", "text/plain; charset=utf-8", "no-store")


def is_base_video_path(path: str) -> bool:
    return path.startswith(PREFIX) and path.endswith(SUFFIX) and len(path) > len(PREFIX) + len(SUFFIX)


class BaseVideos:
    """The route and its small cache of files."""

    def __init__(self, pool: BackendPool) -> None:
        self._pool = pool
        self._files: OrderedDict[tuple[str, int], tuple[str, bytes]] = OrderedDict()

    async def answer(self, path: str, query: str, if_none_match: str | None) -> Answer:
        name = urllib.parse.unquote(path[len(PREFIX) : -len(SUFFIX)])
        fields = urllib.parse.parse_qs(query)
        codec_name = fields.get("codec", [""])[0]
        codec = CODECS.get(codec_name)
        if codec is None:
            return _text(http.HTTPStatus.BAD_REQUEST, f"codec must be one of {', '.join(CODECS)}")
        try:
            etag, data = await self._current(name, codec)
        except BackendError as error:
            status = _HTTP_STATUS.get(error.code, http.HTTPStatus.BAD_GATEWAY)
            return _text(status, error.message)
        version = fields.get("v", [None])[0]
        if version != etag:
            location = f"{path}?{urllib.parse.urlencode({'codec': codec_name, 'v': etag})}"
            redirect = http.HTTPStatus.TEMPORARY_REDIRECT
            return Answer(redirect, b"", "text/plain; charset=utf-8", "no-cache", [("Location", location)])
        headers = [("ETag", f'"{etag}"')]
        if if_none_match is not None and f'"{etag}"' in if_none_match:
            return Answer(http.HTTPStatus.NOT_MODIFIED, b"", CONTENT_TYPE, IMMUTABLE, headers)
        return Answer(http.HTTPStatus.OK, data, CONTENT_TYPE, IMMUTABLE, headers)

    async def _current(self, name: str, codec: int) -> tuple[str, bytes]:
        """The current file of `name` in `codec`, from memory when the server says it is current."""
        key = (name, codec)
        held = self._files.get(key)
        request = lipsync_pb2.GetBaseVideoRequest(
            model_name=name,
            codec=codec,  # type: ignore[arg-type]  # one of the enum's numbers, from CODECS
            if_none_match="" if held is None else held[0],
        )
        pieces: list[bytes] = []
        etag = ""
        channel = await self._pool.channel(asyncio.get_running_loop().time() + TIMEOUT_S)
        try:
            async for reply in lipsync_pb2_grpc.LipSyncStub(channel).GetBaseVideo(request, timeout=TIMEOUT_S):
                if reply.etag:
                    etag = reply.etag
                if reply.not_modified and held is not None:
                    self._files.move_to_end(key)
                    return held
                pieces.append(reply.data)
        except grpc.aio.AioRpcError as exc:
            raise rpc_error(exc) from None
        data = b"".join(pieces)
        self._files[key] = (etag, data)
        self._files.move_to_end(key)
        while len(self._files) > KEEP:
            self._files.popitem(last=False)
        return etag, data
