"""Writing line protocol to InfluxDB over the v1 HTTP API (the async shell around httpx).

The v1 endpoints (``POST /write``, ``/query``, ``/ping``) are what InfluxDB 1.x serves and
what 2.x and 3.x accept through their v1 compatibility API, so one client covers all.

How a write answers, and what this module does with it:

- 204: durably accepted (1.x answers after the WAL write).
- 429, 503: overloaded; wait what ``Retry-After`` says (seconds or an HTTP date, capped),
  else exponential backoff with jitter; likewise other 5xx, connection errors and timeouts.
  After ``retries`` retries: ``SinkError(retryable=True)`` - the caller keeps the lines.
- 413: the body is over the server's ``max-body-size``: the batch is halved until it fits.
- 400 (422 on 2.x): some lines were refused ("unable to parse", "partial write: field
  type conflict", points beyond the retention policy). The good lines of such a batch may already be
  stored, so the batch is bisected and each half written again - rewriting a point is
  idempotent (same measurement, tags and time overwrite) - until every refused line is
  known alone, with the server's reason. Cost: about ``2 * bad * log2(batch)`` requests;
  a part whose every line was refused (1.x says ``dropped=N``) is not split further.
- 401, 403: ``SinkError(retryable=False)``: credentials refused (never shown).
- 404 "database not found": ``SinkError(retryable=False)`` naming the database and fix.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import random
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal

import httpx
import msgspec

from gateway.drivers.dlms.keys import SecretBytes
from gateway.errors import ConfigError, SinkError

Sleep = Callable[[float], Awaitable[object]]
#: Longest wait a server's Retry-After is honoured with, in seconds.
RETRY_AFTER_CAP_S = 60.0
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
#: Answers that concern some lines of a body, found by halving it (2.x says 422 for
#: points outside the retention period where 1.x says 400).
_PER_LINE = (400, 413, 422)
_DROPPED = re.compile(r"\bdropped=(\d+)")


@dataclass(frozen=True, slots=True)
class InfluxAuth:
    """Credentials. v1: user and password, sent as HTTP Basic (or as ``u``/``p`` query
    parameters, for proxies that strip Authorization). 2.x/3.x compatibility API: a
    token, sent as ``Authorization: Token ...``. Secrets print as their length only."""

    username: str = ""
    password: SecretBytes | None = None
    token: SecretBytes | None = None
    send_as: Literal["basic", "params", "token"] = "basic"

    @classmethod
    def v1(cls, username: str, password: str, *, as_params: bool = False) -> InfluxAuth:
        return cls(username=username, password=SecretBytes(password.encode(), label="password"),
                   send_as="params" if as_params else "basic")

    @classmethod
    def with_token(cls, token: str) -> InfluxAuth:
        return cls(token=SecretBytes(token.encode(), label="token"), send_as="token")

    def headers(self) -> dict[str, str]:
        if self.send_as == "token" and self.token is not None:
            return {"Authorization": "Token " + self.token.reveal().decode()}
        if self.send_as == "basic" and self.password is not None:
            pair = self.username.encode() + b":" + self.password.reveal()
            return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
        return {}

    def params(self) -> dict[str, str]:
        if self.send_as == "params" and self.password is not None:
            return {"u": self.username, "p": self.password.reveal().decode()}
        return {}


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    """Lines stored, and (index in the written sequence, server's reason) of each refused."""

    accepted: int
    rejected: list[tuple[int, str]] = field(default_factory=list)


class QuerySeries(msgspec.Struct, frozen=True):
    name: str = ""
    columns: list[str] = []
    values: list[list[int | float | str | bool | None]] = []
    tags: dict[str, str] | None = None


class QueryResult(msgspec.Struct, frozen=True):
    """One statement's answer in a /query response."""

    statement_id: int = 0
    series: list[QuerySeries] = []
    error: str | None = None
    partial: bool = False


class _QueryResponse(msgspec.Struct, frozen=True):
    results: list[QueryResult] = []
    error: str | None = None


_decode_query = msgspec.json.Decoder(_QueryResponse).decode


def quote_ident(name: str) -> str:
    """An InfluxQL identifier in double quotes."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_string(text: str) -> str:
    """An InfluxQL string literal in single quotes."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def retry_after_s(value: str | None, *, now: datetime | None = None,
                  cap_s: float = RETRY_AFTER_CAP_S) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), capped;
    ``None`` when absent or unreadable (then the caller backs off on its own)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), cap_s)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    wait = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(wait, 0.0), cap_s)


def _dropped(reason: str) -> int:
    """The ``dropped=N`` of a 1.x partial write (points refused), 0 when not given."""
    match = _DROPPED.search(reason)
    return int(match.group(1)) if match else 0


def _reason(resp: httpx.Response) -> str:
    """The server's error text: 1.x says {"error": ...}, 2.x/3.x {"message": ...}."""
    err: object = None
    try:
        body = msgspec.json.decode(resp.content, type=dict[str, object])
        err = body.get("error") or body.get("message")
    except msgspec.DecodeError:  # not JSON (a proxy's page): the text as it is
        pass
    text = err if isinstance(err, str) else resp.text or resp.reason_phrase
    return text.strip()[:500]


class InfluxHttp:
    """The HTTP plumbing both the writer and the reader use: one client, auth, retries,
    and the translation of every failure into ``SinkError``."""

    def __init__(self, url: str, database: str, *, auth: InfluxAuth | None = None,
                 retention_policy: str | None = None, timeout_s: float = 10.0,
                 retries: int = 5, sleep: Sleep = asyncio.sleep) -> None:
        parsed = httpx.URL(url)
        # Where the server is, for messages: never the userinfo of the URL.
        self.where = f"{parsed.scheme}://{parsed.host}" + (
            f":{parsed.port}" if parsed.port else "")
        self.url = url
        self.database = database
        self.retention_policy = retention_policy
        self.retries = retries
        self._auth = auth or InfluxAuth()
        self._timeout_s = timeout_s
        self._sleep = sleep
        self._random = random.Random()
        self._client: httpx.AsyncClient | None = None

    async def open(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self.url, timeout=self._timeout_s, headers=self._auth.headers(),
                trust_env=False,
            )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _backoff(self, attempt: int) -> float:
        return min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2.0**attempt) * self._random.uniform(0.5, 1.0)

    async def request(self, method: str, path: str, *, params: dict[str, str],
                      content: bytes | None = None, headers: dict[str, str] | None = None,
                      ) -> httpx.Response:
        """Send, retrying what may pass (429, 5xx, network); raise for refusals.
        Returns the response of any other status for the caller to judge (2xx, 400, 413,
        422)."""
        if self._client is None:
            raise SinkError(f"InfluxDB client for {self.where} is not open", retryable=False)
        params = {**params, **self._auth.params()}
        last = ""
        for attempt in range(self.retries + 1):
            wait: float | None = None
            try:
                resp = await self._client.request(method, path, params=params, content=content,
                                                  headers=headers)
            except httpx.TransportError as exc:  # refused, reset, timed out
                last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                status = resp.status_code
                if status in (429, 503) or status >= 500:
                    last = f"HTTP {status}: {_reason(resp)}"
                    if status in (429, 503):
                        wait = retry_after_s(resp.headers.get("Retry-After"))
                else:
                    self._refusal(resp)
                    return resp
            if attempt < self.retries:
                await self._sleep(wait if wait is not None else self._backoff(attempt))
        raise SinkError(f"InfluxDB at {self.where} failed {self.retries + 1} attempts; "
                        f"last: {last}", retryable=True)

    def _refusal(self, resp: httpx.Response) -> None:
        status = resp.status_code
        if status in (401, 403):
            raise SinkError(
                f"InfluxDB at {self.where} refused the credentials (HTTP {status}: "
                f"{_reason(resp)}); fix: check the user/password or token and its "
                f"permissions on database {self.database!r}", retryable=False)
        if status == 404:
            reason = _reason(resp)
            if "database not found" in reason:
                raise SinkError(
                    f"InfluxDB at {self.where} has no database {self.database!r}; fix: "
                    f"create it (CREATE DATABASE {quote_ident(self.database)}, or a bucket "
                    "with a DBRP mapping on 2.x/3.x) or correct the database name",
                    retryable=False)
            raise SinkError(f"InfluxDB at {self.where}: {resp.request.url.path} not found "
                            f"({reason}); is this the v1 HTTP API?", retryable=False)
        if 400 <= status < 500 and status not in _PER_LINE:
            raise SinkError(f"InfluxDB at {self.where} answered HTTP {status}: "
                            f"{_reason(resp)}", retryable=False)

    async def query(self, q: str, *, write: bool = False) -> list[QueryResult]:
        """Run InfluxQL (``;``-separated statements); times come as epoch seconds.
        A statement's error becomes ``SinkError(retryable=False)``."""
        params = {"db": self.database, "epoch": "s"}
        if self.retention_policy:
            params["rp"] = self.retention_policy
        resp = await self.request(
            "POST" if write else "GET", "/query", params={**params, "q": q})
        if resp.status_code != 200:
            raise SinkError(f"InfluxDB at {self.where} query failed (HTTP "
                            f"{resp.status_code}): {_reason(resp)}", retryable=False)
        try:
            answer = _decode_query(resp.content)
        except msgspec.DecodeError as exc:
            raise SinkError(f"InfluxDB at {self.where} answered a query with what is not "
                            f"its JSON: {exc}", retryable=False) from exc
        errors = [r.error for r in answer.results if r.error] + (
            [answer.error] if answer.error else [])
        if errors:
            raise SinkError(f"InfluxDB at {self.where} refused a query: {errors[0]}",
                            retryable=False)
        return answer.results


class InfluxWriter(InfluxHttp):
    """Writes line protocol in batches; see the module docstring for each answer."""

    def __init__(self, url: str, database: str, *, auth: InfluxAuth | None,
                 retention_policy: str | None = None, gzip: bool = True,
                 batch_lines: int = 5000, timeout_s: float = 10.0, retries: int = 5,
                 sleep: Sleep = asyncio.sleep) -> None:
        super().__init__(url, database, auth=auth, retention_policy=retention_policy,
                         timeout_s=timeout_s, retries=retries, sleep=sleep)
        if batch_lines < 1:
            raise ConfigError(f"batch_lines={batch_lines}", key="batch_lines",
                              fix="at least 1; 5000 suits InfluxDB")
        self.gzip = gzip
        self.batch_lines = batch_lines
        #: Requests sent by the last write (the bisection's cost shows here).
        self.requests = 0

    async def ensure_database(self) -> None:
        """CREATE DATABASE (idempotent on 1.x). On 2.x/3.x create the bucket and its
        DBRP mapping instead: the server's refusal is raised as it comes."""
        await self.query(f"CREATE DATABASE {quote_ident(self.database)}", write=True)

    async def write(self, lines: Sequence[bytes]) -> WriteOutcome:
        self.requests = 0
        accepted = 0
        rejected: list[tuple[int, str]] = []
        for lo in range(0, len(lines), self.batch_lines):
            accepted += await self._write_part(lines, lo, min(lo + self.batch_lines,
                                                                len(lines)), rejected)
        return WriteOutcome(accepted=accepted, rejected=rejected)

    async def _write_part(self, lines: Sequence[bytes], lo: int, hi: int,
                          rejected: list[tuple[int, str]]) -> int:
        """Write lines[lo:hi]; halve on 400/413. Returns how many were accepted."""
        resp = await self._post(b"\n".join(lines[lo:hi]))
        status = resp.status_code
        if 200 <= status < 300:
            return hi - lo
        reason = _reason(resp)
        if hi - lo == 1 or (status != 413 and _dropped(reason) == hi - lo):
            # One line, or every line of the part refused (a measurement-wide field
            # type conflict): nothing left to isolate.
            if status == 413:
                reason = f"line longer than the server's max-body-size ({reason})"
            rejected.extend((i, reason) for i in range(lo, hi))
            return 0
        mid = (lo + hi) // 2
        return (await self._write_part(lines, lo, mid, rejected)
                + await self._write_part(lines, mid, hi, rejected))

    async def _post(self, body: bytes) -> httpx.Response:
        self.requests += 1
        params = {"db": self.database, "precision": "s"}
        if self.retention_policy:
            params["rp"] = self.retention_policy
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.gzip:
            body = gzip.compress(body, compresslevel=5, mtime=0)
            headers["Content-Encoding"] = "gzip"
        resp = await self.request("POST", "/write", params=params, content=body,
                                  headers=headers)
        if resp.status_code not in _PER_LINE and not 200 <= resp.status_code < 300:
            raise SinkError(f"InfluxDB at {self.where} answered a write with HTTP "
                            f"{resp.status_code}: {_reason(resp)}", retryable=False)
        return resp
