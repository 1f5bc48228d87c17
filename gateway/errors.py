"""OpenAI's error envelope and the exceptions that map to it.

Every failure the gateway itself produces leaves through `GatewayError.to_response`, so a client
always sees `{"error": {"message", "type", "param", "code"}}` with the right status, whichever
stage refused the request.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from aiohttp import ClientTimeout, web


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> bytes:
    error = {"message": message, "type": type_, "param": param, "code": code}
    try:
        return orjson.dumps({"error": error})
    except orjson.JSONEncodeError:  # a lone surrogate echoed from a hostile path or body: escape it
        return orjson.dumps({"error": {k: _printable(v) for k, v in error.items()}})


def _printable(value: str | None) -> str | None:
    return None if value is None else value.encode("utf-8", "backslashreplace").decode("utf-8")


class GatewayError(Exception):
    status: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = dict(headers or {})

    def to_response(self) -> web.Response:
        return web.Response(
            status=self.status,
            body=error_body(self.message, self.type, self.param, self.code),
            content_type="application/json",
            headers=self.headers,
        )


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class Unauthorized(GatewayError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class NotCanonical(GatewayError):
    """Another spelling of a path the gateway serves: the client is sent to the one spelling (308 keeps
    the method and the body), so exactly one spelling is ever judged and forwarded."""

    status = 308
    type = "invalid_request_error"
    code = "non_canonical_path"


class MethodNotAllowed(GatewayError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class ExpectationFailed(GatewayError):
    status = 417
    type = "invalid_request_error"
    code = "expectation_failed"


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RequestTimeout(GatewayError):
    """The client was too slow to send its request; the connection is closed after the answer."""

    status = 408
    type = "invalid_request_error"
    code = "request_timeout"

    def to_response(self) -> web.Response:
        response = super().to_response()
        response.force_close()  # the rest of a stalled body is not worth waiting for
        return response


class ServiceUnavailable(GatewayError):
    status = 503
    type = "server_error"
    code = "gateway_draining"


class UpstreamUnavailable(GatewayError):
    status = 502
    type = "upstream_error"
    code = "upstream_unavailable"


class UpstreamTimeout(GatewayError):
    status = 504
    type = "upstream_error"
    code = "upstream_timeout"


class PolicyViolation(GatewayError):
    status = 403
    type = "permission_error"
    code = "policy_violation"


class UpstreamAnswer(GatewayError):
    """The upstream refused a call the gateway made on the client's behalf: its answer goes back as is."""

    def __init__(self, status: int, body: bytes, content_type: str) -> None:
        super().__init__(f"upstream answered {status}")
        self.status = status
        self._body = body
        self._content_type = content_type

    def to_response(self) -> web.Response:
        return web.Response(status=self.status, body=self._body, headers={"Content-Type": self._content_type})


class RateLimited(GatewayError):
    """429 like OpenAI's: `type` names what ran out (requests or tokens), headers say when to retry."""

    status = 429
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, kind: str, headers: Mapping[str, str]) -> None:
        super().__init__(message, headers=headers)
        self.type = kind


class StateDown(ServiceUnavailable):
    code = "state_unavailable"


class AuditDown(ServiceUnavailable):
    code = "audit_unavailable"


def upstream_failure(exc: BaseException, timeout: ClientTimeout | None = None) -> GatewayError:
    """What a transport failure means to the client: 504 for a timeout, 502 for the rest."""
    if isinstance(exc, TimeoutError):
        after = f" within {timeout.sock_read:g}s" if timeout is not None and timeout.sock_read else ""
        return UpstreamTimeout(f"The upstream did not answer{after}.")
    return UpstreamUnavailable(f"The upstream could not be reached: {_describe(exc)}")


def _describe(exc: BaseException) -> str:
    return type(exc).__name__ if not str(exc) else f"{type(exc).__name__}: {exc}"
