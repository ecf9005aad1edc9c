"""JSON responses encoded with orjson, the one response class every route uses."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from clarion.schemas.base import ResponseModel


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        if isinstance(content, ResponseModel):
            content = content.to_wire()
        return orjson.dumps(content)


def no_content() -> Response:
    return Response(status_code=204)
