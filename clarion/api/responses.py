"""JSON responses encoded with orjson, the one response class every route uses.

Response models are encoded straight from their fields (`ResponseModel.wire_fields`); values orjson cannot
encode (integers past 64 bits, which JSON allows) send the whole body through Pydantic and the standard
`json` module instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import BaseModel
from starlette.responses import Response

from clarion.schemas.base import ResponseModel


def _encode_model(value: Any) -> Any:
    if isinstance(value, ResponseModel):
        return value.wire_fields()
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    raise TypeError(f"cannot encode {type(value).__name__}")


def encode_json(content: Any) -> bytes:
    try:
        return orjson.dumps(content, default=_encode_model, option=orjson.OPT_UTC_Z)
    except TypeError:
        if isinstance(content, BaseModel):
            content = content.model_dump(mode="json", by_alias=True)
        return json.dumps(content, separators=(",", ":")).encode()


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return encode_json(content)

    def init_headers(self, headers: Mapping[str, str] | None = None) -> None:
        if headers is not None:
            super().init_headers(headers)
            return
        # The two headers every JSON body has, without the general case's bookkeeping.
        self.raw_headers = [
            (b"content-length", str(len(self.body)).encode()),
            (b"content-type", b"application/json"),
        ]


def no_content() -> Response:
    return Response(status_code=204)
