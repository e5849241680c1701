"""Routes the C++ core's structured log records to Python's ``logging`` (logger ``fleethub.<component>``).

A daemon thread pulls records in batches (the core queues them; C++ threads never call Python)."""

from __future__ import annotations

import logging
import threading
from typing import Any


class LogPump:
    def __init__(self, server: Any, base: logging.Logger) -> None:
        self._server = server
        self._base = base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fleethub-log", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                batch = self._server.poll_logs(200)
            except Exception:  # the hub was closed under us
                return
            self._emit(batch)

    def _emit(self, batch: Any) -> None:
        for level, component, event, message, fields in batch:
            log = self._base.getChild(component)
            if not log.isEnabledFor(level):
                continue
            detail = " ".join(f"{k}={v}" for k, v in fields.items())
            log.log(level, "%s: %s%s", event, message, f" ({detail})" if detail else "",
                    extra={"fleethub_event": event, "fleethub_fields": dict(fields)})

    def flush(self) -> None:
        self._emit(self._server.poll_logs(0))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
