"""Unexpected errors: logged in full with a request id, answered without internals.

A 5xx answer names the request id and nothing else (no exception text, no paths, no
traceback); the server log holds the cause under that id.

    except Exception:
        message = internal_error(log, "unexpected error on /v2/...")
"""

from __future__ import annotations

import logging
import uuid

__all__ = ["internal_error"]


def internal_error(log: logging.Logger, what: str, *, exc_info: object = True) -> str:
    """Log the exception being handled (``what`` says where) under a fresh request id, and
    return the message for the client."""
    request = uuid.uuid4().hex[:12]
    log.error("%s (request %s)", what, request, exc_info=exc_info)
    return f"internal error (request {request}); the server log has the details"
