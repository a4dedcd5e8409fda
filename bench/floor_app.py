"""The floor: a bare FastAPI app served exactly as ``connxt api`` serves Connxt.

One POST route that reads the body and answers a small JSON, one GET route. Both match any
path, so a scenario's own wrk script (same paths, same bodies, same headers) runs against it
unchanged. ``python -m bench.floor_app --port N`` starts it with the uvicorn arguments of
``commands.cli._api``: one process, uvicorn[standard]'s picks (httptools, uvloop), no access log.
"""

from __future__ import annotations

import argparse

from fastapi import FastAPI, Request


def create_app() -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/{path:path}")
    async def accept(path: str, request: Request) -> dict[str, object]:
        body = await request.body()
        return {"received": True, "bytes": len(body)}

    @app.get("/{path:path}")
    async def read(path: str) -> dict[str, str]:
        return {"status": "up"}

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m bench.floor_app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # Keep these in step with commands/cli.py `_api`: the floor must be served the same way.
    uvicorn.run(
        "bench.floor_app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=1,
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
