"""The bare framework's hello-world: Starlette on uvicorn with the same server options as `clarion serve`.
Benchmarks divide Clarion's rates by this one, measured in the same run on the same machine."""

from __future__ import annotations

import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


async def hello(_request: Request) -> Response:
    return JSONResponse({"hello": "world"})


app = Starlette(routes=[Route("/", hello)])

if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )
