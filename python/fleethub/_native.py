"""The one module that imports the C++ extension; everything else imports from here."""

from __future__ import annotations

from . import _core

HubServer = _core.HubServer
make_sas_token_native = _core.make_sas_token
core_version: str = _core.__version__

__all__ = ["HubServer", "make_sas_token_native", "core_version"]
