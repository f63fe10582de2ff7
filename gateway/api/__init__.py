"""Portal feed HTTP API and the daily-usage page.

Serve it with the store opened in the server's event loop::

    import asyncio
    import uvicorn
    from gateway.api import create_app
    from gateway.store.sqlite import SqliteStore

    async def serve() -> None:
        store = SqliteStore("data/gateway.db")
        await store.open()
        try:
            config = uvicorn.Config(create_app(store), host="127.0.0.1", port=8080)
            await uvicorn.Server(config).serve()
        finally:
            await store.close()

    asyncio.run(serve())
"""

from gateway.api.app import create_app

__all__ = ["create_app"]
