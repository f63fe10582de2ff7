"""The operator bearer token check, as a FastAPI dependency.

The same rule as the operator routes (``gateway.api.operator``): without a configured
token the route is off (403, saying how to enable it); a missing or wrong token gets
the same 401 whatever was wrong, compared in constant time.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Header, HTTPException


def operator_guard(token: str | None) -> Callable[[str | None], Awaitable[None]]:
    async def operator_only(authorization: Annotated[str | None, Header()] = None) -> None:
        if token is None:
            raise HTTPException(403, detail="operator routes are off: configure "
                                            "api.operator_token_env or api.operator_token_file")
        given = (authorization or "").removeprefix("Bearer ").encode()
        if not authorization or not hmac.compare_digest(given, token.encode()):
            raise HTTPException(401, detail="operator token required",
                                headers={"WWW-Authenticate": "Bearer"})

    return operator_only
