"""IoT Hub query language over the hub's twins: ``hub.query("SELECT * FROM devices WHERE ...")``.

Results are strongly consistent (committed twins and identities at the time each page is read). Iterating
fetches pages lazily; ``to_pandas()`` reads them all into a DataFrame with nested keys flattened
(``properties.reported.temperature``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional

from .errors import InvalidArgumentError

if TYPE_CHECKING:  # pragma: no cover
    from .hub import Hub

__all__ = ["QueryResult", "QueryPage"]


class QueryPage:
    """One page of results: ``items`` (parsed JSON), ``item_type`` ("twin", "raw", "deviceJob") and the
    ``continuation`` token for the next page (None on the last page)."""

    __slots__ = ("items", "item_type", "continuation")

    def __init__(self, items: List[Any], item_type: str, continuation: Optional[str]) -> None:
        self.items = items
        self.item_type = item_type
        self.continuation = continuation

    def __repr__(self) -> str:
        return f"QueryPage({len(self.items)} {self.item_type} items, more={self.continuation is not None})"


class QueryResult:
    """Iterator over every result of a query, fetched a page at a time.

    >>> for twin in hub.query("SELECT * FROM devices WHERE tags.site = 'b1'"):
    ...     print(twin["deviceId"])
    >>> hub.query("SELECT COUNT() AS n, status FROM devices GROUP BY status").to_pandas()

    The query is compiled when the first page is read, so ``hub.query(...)`` itself raises
    ``InvalidArgumentError`` for a syntax error (its message names the position and the expected token).
    """

    def __init__(self, hub: "Hub", text: str, page_size: int = 100, continuation: Optional[str] = None) -> None:
        if not isinstance(text, str) or not text.strip():
            raise InvalidArgumentError("query text must be a non-empty string such as 'SELECT * FROM devices'")
        if not 1 <= page_size <= 1000:
            raise InvalidArgumentError("page_size must be 1..1000 (the hub caps pages at its max_page_items)")
        self._hub = hub
        self.text = text
        self.page_size = page_size
        self._first: Optional[QueryPage] = self._fetch(continuation or "")

    def _fetch(self, continuation: str) -> QueryPage:
        item_type, items, cont = self._hub._server.query(self.text, continuation, self.page_size)
        return QueryPage(json.loads(items), item_type, cont or None)

    @property
    def item_type(self) -> str:
        """``"twin"`` for ``SELECT *``, ``"raw"`` for projections and aggregates, ``"deviceJob"`` for jobs."""
        return self._first.item_type if self._first is not None else "unknown"

    def pages(self) -> Iterator[QueryPage]:
        """The pages, in order (each page is read from the hub when the iterator gets to it)."""
        page = self._first
        if page is None:
            raise InvalidArgumentError("a QueryResult can be iterated once; run hub.query(...) again")
        self._first = None
        while True:
            yield page
            if page.continuation is None:
                return
            page = self._fetch(page.continuation)

    def __iter__(self) -> Iterator[Any]:
        for page in self.pages():
            yield from page.items

    def to_list(self) -> List[Any]:
        return list(self)

    def to_pandas(self) -> Any:
        """A pandas DataFrame with one row per result; nested objects become dotted columns."""
        try:
            import pandas as pd  # type: ignore[import-untyped,unused-ignore]
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("to_pandas() needs pandas: pip install pandas") from e
        rows: List[Dict[str, Any]] = [r if isinstance(r, dict) else {"value": r} for r in self]
        return pd.json_normalize(rows) if rows else pd.DataFrame()
