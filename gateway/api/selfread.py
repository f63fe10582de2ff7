"""``POST /api/v1/meters/{meter_id}/readings``: customer self-reads of manual meters.

Behind the operator token for now: customer logins come with a later issue, and until
then the portal's backend submits on the customer's behalf (naming them in
``submitted_by``). The body is read with exact decimals: a JSON number 12345.6 is the
decimal 12345.6, never a binary float on the way.

Answers: 201 with what was recorded (outcome ``late`` for a reading stamped before the
last one and fitted into the gap before it); 200 when the same reading was already recorded;
404 (unknown meter or register), 409 (a polled meter, a contradicting reading for the
same instant, another writer) or 422 (every other refusal) as
``{"error": code, "message": ...}``. Every refusal is also kept in the quarantine.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from gateway.api.auth import operator_guard
from gateway.api.feed import MeterId, Problem
from gateway.api.schemas import (
    Rollover,
    SelfReadIn,
    SelfReadOut,
    SelfReadProblem,
    flag_names,
    quality_code,
)
from gateway.ingest.selfread import Receipt, SelfReadRefused, SelfReads
from gateway.validation.selfread import Code, Outcome, Refusal

#: A reading is a few dozen bytes; anything much larger is not one.
MAX_BODY = 4096

_STATUS = {Code.UNKNOWN_METER: 404, Code.UNKNOWN_CHANNEL: 404, Code.POLLED_METER: 409,
           Code.CONFLICTING_READ: 409, Code.BUSY: 409}

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": SelfReadOut, "description": "The same reading was already recorded"},
    401: {"model": Problem, "description": "Missing or wrong operator token"},
    403: {"model": Problem, "description": "Operator routes are not enabled"},
    404: {"model": SelfReadProblem, "description": "Unknown meter or register"},
    409: {"model": SelfReadProblem,
          "description": "A polled meter, a contradicting reading, or another writer"},
    422: {"model": SelfReadProblem, "description": "Refused: see error and message"},
}


def selfread_router(self_reads: SelfReads, token: str | None) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["self-reads"], responses=_RESPONSES)

    @router.post(
        "/meters/{meter_id}/readings", summary="Submit a customer self-read",
        status_code=201, dependencies=[Depends(operator_guard(token))],
        response_model=SelfReadOut,
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/json": {"schema": SelfReadIn.model_json_schema()}}}},
    )
    async def submit(meter_id: MeterId, request: Request) -> JSONResponse:
        """Record a register reading of a manual meter typed in by a customer, through
        the same rules as a polled read. Auth: the operator token, until customer
        logins exist; the portal backend submits on the customer's behalf."""
        raw = await request.body()
        try:
            body = _parse(raw)
        except ValueError as exc:
            refusal = Refusal(code=Code.INVALID_REQUEST, message=str(exc))
            await self_reads.refuse(meter_id, refusal, raw[:300].decode(errors="replace"))
            return _problem(422, str(refusal.code), refusal.message)
        who = body.submitted_by or ""
        if body.source:
            who = f"{who} via {body.source}".strip()
        try:
            receipt = await self_reads.submit(meter_id, body.value, channel=body.channel,
                                              at=body.at, submitted_by=who)
        except SelfReadRefused as refused:
            code = refused.refusal.code
            return _problem(_STATUS.get(code, 422), str(code), refused.refusal.message)
        out = receipt_out(receipt)
        return JSONResponse(status_code=201 if receipt.recorded else 200,
                            content=out.model_dump(mode="json"))

    return router


def _parse(raw: bytes) -> SelfReadIn:
    if len(raw) > MAX_BODY:
        raise ValueError(f"the body is larger than {MAX_BODY} bytes")
    try:
        # Numbers keep their exact text (parse_value reads it as a Decimal); the
        # non-standard NaN/Infinity literals become text that parse_value refuses.
        data = json.loads(raw, parse_float=str, parse_constant=str)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"the body is not JSON: {exc}") from exc
    try:
        return SelfReadIn.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        msg = first["msg"]
        if first["type"] == "timezone_aware":
            msg = "give an ISO 8601 time with an offset, e.g. 2026-11-28T08:00:00-06:00"
        raise ValueError(f"{where}: {msg}") from exc


def _problem(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": code, "message": message})


def receipt_out(receipt: Receipt) -> SelfReadOut:
    rollover = None
    if receipt.outcome is Outcome.ROLLOVER and receipt.previous_value is not None \
            and receipt.consumption is not None:
        rollover = Rollover(previous=_text(receipt.previous_value), value=_text(receipt.value),
                            consumption=_text(receipt.consumption))
    return SelfReadOut(
        meter_id=receipt.meter_id, channel=receipt.channel, at=receipt.at,
        value=_text(receipt.value), unit=receipt.unit.value,
        status="recorded" if receipt.recorded else "already_recorded",
        outcome=receipt.outcome.value, message=receipt.message,
        consumption=None if receipt.consumption is None else _text(receipt.consumption),
        previous_at=receipt.previous_at,
        previous_value=None if receipt.previous_value is None else _text(
            receipt.previous_value),
        rollover=rollover, flags=flag_names(receipt.flags),
        quality=None if receipt.quality is None else quality_code(receipt.quality),
        intervals=receipt.intervals)


def _text(value: Decimal) -> str:
    return f"{value:f}"
