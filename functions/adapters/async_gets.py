"""A poll run's GETs, many in flight on one event loop (aiohttp), not a thread each.

Why: on blocking threads every GET cost hand-offs between its thread and the
run's loop, system calls that each dropped and retook the interpreter lock, and
http.client's header parsing in Python: a third of a poll's CPU. Here one thread
drives every connection and aiohttp parses answers in C (docs/poll-design.md has
the figures).

The guarantees are OperationsApi's own, on the same helpers: requests go only to
hosts url_for builds, redirects are never followed, no proxy is read from the
environment, the body is streamed within the byte cap under one timeout for the
whole answer, parsed with bounded nesting and shape-checked, and whatever goes
wrong is that operation's classified failure, never an exception. With
credentials, the token is google.auth's, refreshed once on a 401.
"""
from __future__ import annotations

import asyncio
import atexit
import ssl
import threading
from concurrent.futures import Future
from functools import partial
from typing import Any, Callable

import aiohttp
import certifi
import yarl

from functions.adapters.operations_api import (CHUNK_BYTES, AnswerError, CappedBody, answer_error,
                                               operation_or_failure, parse_answer)
from functions.domain.names import OperationRef
from functions.domain.tracking import ApiFailure


class AsyncGets:
    def __init__(self, url_for: Callable[[OperationRef], str], *, pool_size: int, timeout_s: float,
                 max_answer_bytes: int, credentials: Callable[[], Any] | None = None):
        """credentials: google.auth credentials' factory, called once (None: none are sent)."""
        self._url_for = url_for
        self._pool_size = pool_size
        self._timeout_s = timeout_s
        self._max_bytes = max_answer_bytes
        self._credentials_factory = credentials
        self._credentials: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: Any = None
        self._refreshing: asyncio.Lock | None = None
        self._slots: asyncio.Semaphore | None = None
        self._starting = threading.Lock()

    def start(self, requests: list[tuple[OperationRef, str | None]]) -> list[Future]:
        """GETs of (ref, quota project): each one's answer (the Operation JSON or an ApiFailure)
        as a Future that never fails. One hand-off to the loop for them all: one per GET cost more
        than the GET's own parsing."""
        loop = self._running_loop()
        # Taken now: the caller owns the lists it passed and gets back, and the loop starts later.
        pending = tuple((ref, quota_project, Future()) for ref, quota_project in requests)

        def launch() -> None:
            for ref, quota_project, future in pending:
                loop.create_task(self.get(ref, quota_project)).add_done_callback(partial(_settle, future))

        loop.call_soon_threadsafe(launch)
        return [future for *_, future in pending]

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._starting:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                if self._credentials_factory is not None:  # here, not on the loop: it may do I/O
                    self._credentials = self._credentials_factory()
                threading.Thread(target=loop.run_forever, name="operations-gets", daemon=True).start()
                self._loop = loop
                atexit.register(self.close)
            return self._loop

    def close(self) -> None:
        """Close the connections and stop the loop (at exit: a daemon thread is not waited for)."""
        loop, self._loop = self._loop, None
        session, self._session = self._session, None
        if loop is None:
            return
        if session is not None:
            try:
                asyncio.run_coroutine_threadsafe(session.close(), loop).result(timeout=5)
            except Exception:  # noqa: BLE001 — closing is best effort: the process is ending
                pass
        loop.call_soon_threadsafe(loop.stop)

    async def get(self, ref: OperationRef, quota_project: str | None = None) -> dict | ApiFailure:
        session = self._client()
        # GETs beyond the pool wait here, not in aiohttp's pool: its timeout would count the wait,
        # and a slow API would time out the GETs queued behind it before they went out.
        async with self._slots:
            try:
                answer = await self._call(session, ref, quota_project)
            except AnswerError as exc:
                return exc.failure()
        return operation_or_failure(answer, ref)

    async def _call(self, session, ref: OperationRef, quota_project: str | None):
        """Building, sending and reading the request are one step, as in OperationsApi._call."""
        try:
            # Built, not parsed: url_for refuses any host lrowatch did not build, and the URL
            # goes out as built (yarl would otherwise re-quote it).
            url = yarl.URL(self._url_for(ref), encoded=True)
            for attempt in (1, 2):
                headers = {"x-goog-user-project": quota_project} if quota_project else {}
                await self._authorize(headers, fresh=attempt == 2)
                async with session.get(url, headers=headers, allow_redirects=False) as response:
                    if response.status == 401 and self._credentials is not None and attempt == 1:
                        continue  # one refresh on 401, then the 401 stands (classified permanent)
                    return parse_answer(response.status, await self._read(response), response.headers)
        except AnswerError:
            raise
        except Exception as exc:  # connection trouble, timeouts, aiohttp's own errors: this call's failure
            raise answer_error(exc) from exc
        raise AssertionError("unreachable")

    async def _read(self, response) -> bytes:
        """The body, streamed (and decompressed), within the byte cap and one timeout overall
        (the session's total timeout, and CappedBody's deadline between chunks)."""
        body = CappedBody(response.status, response.headers, self._max_bytes, self._timeout_s)
        async for chunk in response.content.iter_chunked(CHUNK_BYTES):
            body.add(chunk)
        return body.whole()

    def _client(self):
        """The session, made on the loop's thread on first use: its pool holds `pool_size`
        connections, and as many GETs go out at once (`_slots`); the others wait their turn."""
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._pool_size,
                                             ssl=ssl.create_default_context(cafile=certifi.where()))
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False, auto_decompress=True,
                                                  timeout=aiohttp.ClientTimeout(total=self._timeout_s))
            self._refreshing = asyncio.Lock()
            self._slots = asyncio.Semaphore(self._pool_size)
        return self._session

    async def _authorize(self, headers: dict, fresh: bool) -> None:
        """The bearer token (and the credentials' quota project, as google.auth applies it);
        refreshed off the loop when expired, or when `fresh` (after a 401)."""
        credentials = self._credentials
        if credentials is None:
            return
        token = credentials.token
        if fresh or not credentials.valid:
            async with self._refreshing:
                if credentials.token == token and (fresh or not credentials.valid):  # not refreshed meanwhile
                    from google.auth.transport.requests import Request

                    await asyncio.get_running_loop().run_in_executor(None, credentials.refresh, Request())
        credentials.apply(headers)


def _settle(future: Future, task: asyncio.Task) -> None:
    if task.cancelled():
        future.cancel()
    elif (exc := task.exception()) is not None:
        future.set_exception(exc)
    else:
        future.set_result(task.result())
