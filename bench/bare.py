"""The Python ceiling: a bare aiohttp app that stores and serves the same bytes as the gateway
(no auth, no metadata, no hashing). Objects up to 1 MiB live in memory; bigger ones on disk,
read and written in 1 MiB chunks in worker threads, as the gateway's file location does.

    python -m bench.bare PORT ROOT
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path

from aiohttp import web

CHUNK = 1024 * 1024


def make_app(root: Path) -> web.Application:
    small: dict[str, bytes] = {}
    big: dict[str, Path] = {}

    async def handle(request: web.Request) -> web.StreamResponse:
        name = request.path
        if request.method == "PUT":
            length = request.content_length or 0
            if length <= CHUNK:
                small[name] = await request.read()
                big.pop(name, None)
                return web.Response()
            path = root / uuid.uuid4().hex
            fd = await asyncio.to_thread(os.open, path, os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                async for chunk in request.content.iter_chunked(CHUNK):
                    await asyncio.to_thread(os.write, fd, chunk)
            finally:
                os.close(fd)
            old = big.get(name)
            big[name] = path
            small.pop(name, None)
            if old:
                old.unlink(missing_ok=True)
            return web.Response()
        if request.method in ("GET", "HEAD"):
            if name in small:
                body = small[name]
                if request.method == "HEAD":
                    return web.Response(headers={"Content-Length": str(len(body))})
                return web.Response(body=body)
            if name not in big:
                return web.Response(status=404)
            path = big[name]
            size = path.stat().st_size
            response = web.StreamResponse()
            response.content_length = size
            await response.prepare(request)
            if request.method == "GET":
                handle = await asyncio.to_thread(open, path, "rb")
                try:
                    while chunk := await asyncio.to_thread(handle.read, CHUNK):
                        await response.write(chunk)
                finally:
                    handle.close()
            await response.write_eof()
            return response
        if request.method == "DELETE":
            small.pop(name, None)
            return web.Response(status=204)
        return web.Response(status=405)

    app = web.Application(client_max_size=2 * CHUNK)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def main() -> None:
    port, root = int(sys.argv[1]), Path(sys.argv[2])
    root.mkdir(parents=True, exist_ok=True)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(make_app(root), host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
