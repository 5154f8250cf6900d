"""The HTTP edge both flows share: JSON answers, and the one place BridgeErrors become answers.

Every BridgeError becomes an answer here and nowhere else (``error_response``); anything unexpected
becomes a generic 500 with a correlation id (``http_errors``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from chalice.app import Response

from chalicelib import __version__
from chalicelib.errors import BridgeError
from chalicelib.observability import logger

JSON_HEADERS = {"Content-Type": "application/json"}

View = TypeVar("View", bound=Callable[..., Response])


def json_response(body: dict[str, Any], status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body=body, status_code=status_code, headers={**JSON_HEADERS, **(headers or {})})


def error_response(exc: BridgeError) -> Response:
    return json_response(exc.body(), exc.status_code, exc.headers())


def http_errors(view: View) -> View:
    """Map BridgeErrors to their answers and anything unexpected to a generic 500 with a correlation id."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Response:
        try:
            return view(*args, **kwargs)
        except BridgeError as exc:
            return error_response(exc)
        except Exception:
            logger.exception("unhandled error")
            return json_response(
                {
                    "error": "internal_error",
                    "message": "the bridge failed unexpectedly; quote the correlation id to the operators",
                    "correlationId": logger.get_correlation_id(),
                },
                500,
            )

    return wrapper  # type: ignore[return-value]


# Chalice's own answers (before or around our views) carry {"Code", "Message"}: renamed to our codes.
_CHALICE_CODES = {
    "MethodNotAllowedError": ("method_not_allowed", "; this route takes {allow}"),
    "UnsupportedMediaType": ("unsupported_media_type", "; send Content-Type: application/json"),
    "BadRequestError": ("bad_request", ""),
    "NotFoundError": ("not_found", ""),
    "InternalServerError": ("internal_error", ""),
}


def as_ours(response: Response) -> Response:
    """Chalice's own error answers (405 wrong method, 415 content type, …) in our ``{"error", "message"}``
    shape; every other answer unchanged."""
    body = response.body
    if not (isinstance(body, dict) and set(body) == {"Code", "Message"}):
        return response
    code, hint = _CHALICE_CODES.get(str(body["Code"]), ("error", ""))
    headers = {k: str(v) for k, v in response.headers.items() if k.lower() != "content-type"}
    hint = hint.format(allow=headers.get("Allow", "POST"))
    return json_response({"error": code, "message": f"{body['Message']}{hint}"}, response.status_code, headers)


def health() -> Response:
    return json_response({"status": "ok", "version": __version__})
