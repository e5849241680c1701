"""Small helpers shared by the benchmark runners and the hub driver processes (kept free of fleethub imports,
so a driver can load it before it imports the package it is told to)."""

from __future__ import annotations

import json
import os
from typing import Any


def write_json(path: Any, obj: Any) -> None:
    """Writes `obj` as JSON so that a reader polling for `path` never sees a half-written file."""
    path = str(path)
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f)
    os.rename(path + ".tmp", path)
