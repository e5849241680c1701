"""Resolves asyncio futures of calls the C++ core completes on its own threads (direct methods, C2D sends).

The core queues completions; one daemon thread per hub pulls them in batches (the GIL is taken once per
batch) and hands each result to its future's loop with ``call_soon_threadsafe``. No thread per call."""

from __future__ import annotations

import asyncio
import itertools
import threading
from typing import Any, Callable, Dict, Optional, Tuple

from . import errors as _errors
from .errors import DeviceNotFoundError, NotFoundError

Decode = Callable[[int, bytes], Any]


class CompletionPump:
    def __init__(self, server: Any) -> None:
        self._server = server
        self._tokens = itertools.count(1)
        self._futures: Dict[int, Tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Decode]] = {}
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None

    async def call(self, start: Callable[[int], object], decode: Decode) -> Any:
        """Runs ``start(token)`` (which hands the work to the core) and awaits its completion."""
        loop = asyncio.get_running_loop()
        fut: "asyncio.Future[Any]" = loop.create_future()
        token = next(self._tokens)
        with self._lock:
            self._futures[token] = (loop, fut, decode)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="fleethub-completions", daemon=True)
                self._thread.start()
        try:
            start(token)
        except BaseException:
            with self._lock:
                self._futures.pop(token, None)
            raise
        return await fut

    def _run(self) -> None:
        srv = self._server
        while True:
            try:
                batch = srv.method_completions(200)
            except Exception:  # pragma: no cover - the hub object is gone
                return
            for token, status, payload, err_cls, message in batch:
                with self._lock:
                    entry = self._futures.pop(token, None)
                if entry is None:
                    continue
                loop, fut, decode = entry
                if err_cls is None:
                    try:
                        outcome: Any = decode(int(status), payload or b"")
                    except Exception as e:  # noqa: BLE001 - handed to the awaiting caller
                        outcome = e
                else:
                    cls = getattr(_errors, err_cls, _errors.Error)
                    if cls is NotFoundError:
                        cls = DeviceNotFoundError
                    outcome = cls(message)
                _post(loop, fut, outcome)
            if srv.closed:
                with self._lock:
                    left = list(self._futures.values())
                    self._futures.clear()
                for loop, fut, _ in left:
                    _post(loop, fut, _errors.UnavailableError("the hub was closed"))
                return


def _post(loop: asyncio.AbstractEventLoop, fut: "asyncio.Future[Any]", outcome: Any) -> None:
    try:
        loop.call_soon_threadsafe(_resolve, fut, outcome)
    except RuntimeError:  # the caller's loop is closed
        pass


def _resolve(fut: "asyncio.Future[Any]", outcome: Any) -> None:
    if fut.done():
        return
    if isinstance(outcome, BaseException):
        fut.set_exception(outcome)
    else:
        fut.set_result(outcome)
