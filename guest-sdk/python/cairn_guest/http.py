"""Outbound HTTP requests to origins the job grants (``cairn:plugin/http``)::

    from cairn_guest import http

    health = http.get(f"{url}/_cluster/health").raise_for_status().json()
    log.info("cluster health", status=health["status"])

    (
        http.Request.put(f"{url}/_snapshot/backups/nightly")
        .header("Authorization", "ApiKey {{secret:es-key}}")
        .json({"indices": "*"})
        .timeout(30)
        .send()
        .raise_for_status()
    )

Any status is a :class:`Response`; :meth:`Response.raise_for_status` turns
a non-2xx one into :class:`~cairn_guest.Failed`. A header value may contain
``{{secret:NAME}}``: the host substitutes the secret and redacts it from
logs. Redirects are followed by the host, each hop checked against the
job's grants.
"""

from __future__ import annotations

import json as _json
import math
from typing import Any, Iterable, Mapping

from wit_world.imports import http as _wit

from ._wit import call
from .errors import Failed, Invalid

__all__ = ["Request", "Response", "Pending", "request", "get", "post", "put", "delete", "METHODS"]

#: The methods the host sends.
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH")

_WIT_METHODS = {name: getattr(_wit.Method, name) for name in METHODS}

#: How many bytes of a body error messages quote.
_EXCERPT = 500


class Request:
    """An HTTP request, built fluently and sent with :meth:`send` (or
    :meth:`start`). Builder methods return the request itself."""

    def __init__(self, method: str, url: str) -> None:
        """A ``method`` request (``"GET"``, ``"post"`` …) to the absolute ``url``."""
        upper = str(method).upper()
        if upper not in _WIT_METHODS:
            raise Invalid(
                f"unsupported HTTP method `{method}`: expected GET, HEAD, POST, PUT, DELETE or PATCH"
            )
        self._method = upper
        self._url = str(url)
        self._headers: list[tuple[str, str]] = []
        self._body: bytes | None = None
        self._timeout_ms: int | None = None

    @staticmethod
    def get(url: str) -> Request:
        """A GET request."""
        return Request("GET", url)

    @staticmethod
    def head(url: str) -> Request:
        """A HEAD request."""
        return Request("HEAD", url)

    @staticmethod
    def post(url: str) -> Request:
        """A POST request."""
        return Request("POST", url)

    @staticmethod
    def put(url: str) -> Request:
        """A PUT request."""
        return Request("PUT", url)

    @staticmethod
    def delete(url: str) -> Request:
        """A DELETE request."""
        return Request("DELETE", url)

    @staticmethod
    def patch(url: str) -> Request:
        """A PATCH request."""
        return Request("PATCH", url)

    def header(self, name: str, value: str) -> Request:
        """Add a header. The value may contain ``{{secret:NAME}}``."""
        self._headers.append((str(name), str(value)))
        return self

    def headers(self, headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> Request:
        """Add several headers (a mapping or ``(name, value)`` pairs)."""
        items = headers.items() if isinstance(headers, Mapping) else headers
        for name, value in items:
            self.header(name, value)
        return self

    def body(self, body: bytes | str) -> Request:
        """Set the body (text is UTF-8 encoded)."""
        self._body = body.encode() if isinstance(body, str) else bytes(body)
        return self

    def json(self, value: Any) -> Request:
        """Set ``value``, serialized, as the body, and ``Content-Type:
        application/json`` unless a content type is already set.

        Raises :class:`~cairn_guest.Invalid` when ``value`` is not JSON-serializable.
        """
        try:
            body = _json.dumps(value).encode()
        except (TypeError, ValueError) as e:
            raise Invalid(f"cannot serialize the request body as JSON: {e}") from None
        if not any(name.lower() == "content-type" for name, _ in self._headers):
            self.header("Content-Type", "application/json")
        return self.body(body)

    def timeout(self, seconds: float) -> Request:
        """Set the overall timeout of this request (the host's default
        applies otherwise)."""
        self._timeout_ms = math.ceil(seconds * 1000)
        return self

    @property
    def method(self) -> str:
        """The method, upper case."""
        return self._method

    @property
    def url(self) -> str:
        """The URL."""
        return self._url

    def _to_wit(self) -> _wit.Request:
        return _wit.Request(
            method=_WIT_METHODS[self._method],
            url=self._url,
            headers=[_wit.Header(name=n, value=v) for n, v in self._headers],
            body=self._body,
            timeout_ms=self._timeout_ms,
        )

    def send(self) -> Response:
        """Send the request and wait for the response. The request can be
        sent again.

        Raises :class:`~cairn_guest.Denied` for an origin the job does not
        grant, :class:`~cairn_guest.Limit` for a body over the cap or a
        timeout, :class:`~cairn_guest.Failed` for connection errors. A
        non-2xx status is not an error (see :meth:`Response.raise_for_status`).
        """
        return Response._from_wit(call(_wit.send, self._to_wit()), self._method, self._url)

    def start(self) -> Pending:
        """Start sending the request and return at once; :meth:`Pending.wait`
        gives what :meth:`send` would have. Meanwhile the module can prepare
        the next request::

            in_flight = None
            for batch in batches:
                next_ = http.Request.post(f"{url}/_bulk").body(batch).start()
                if in_flight:
                    in_flight.wait().raise_for_status()
                in_flight = next_
            if in_flight:
                in_flight.wait().raise_for_status()

        Raises :class:`~cairn_guest.Limit` when 8 started requests are not
        waited for or closed yet; the errors of :meth:`send` come from
        :meth:`Pending.wait`.
        """
        return Pending(call(_wit.start, self._to_wit()), self._method, self._url)

    def __repr__(self) -> str:
        return f"Request({self._method!r}, {self._url!r})"


class Pending:
    """A request started with :meth:`Request.start`. Closing it (or leaving
    a ``with`` block) before :meth:`wait` cancels the request."""

    def __init__(self, inner: Any, method: str, url: str) -> None:
        self._inner = inner
        #: The method of the request.
        self.method = method
        #: The URL of the request.
        self.url = url

    def wait(self) -> Response:
        """Wait for the response; raises as :meth:`Request.send`."""
        if self._inner is None:
            raise Invalid(f"{self.method} {self.url}: the response was already taken")
        inner, self._inner = self._inner, None
        try:
            return Response._from_wit(call(inner.wait), self.method, self.url)
        finally:
            inner.__exit__(None, None, None)

    def close(self) -> None:
        """Cancel the request if it was not waited for."""
        if self._inner is not None:
            inner, self._inner = self._inner, None
            inner.__exit__(None, None, None)

    def __enter__(self) -> Pending:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Response:
    """An HTTP response."""

    __slots__ = ("status", "headers", "body", "method", "url")

    def __init__(
        self,
        status: int,
        headers: list[tuple[str, str]],
        body: bytes,
        method: str = "GET",
        url: str = "",
    ) -> None:
        #: Status code.
        self.status = status
        #: Headers as ``(name, value)`` pairs, in the order received.
        self.headers = headers
        #: Body, at most the job's body cap.
        self.body = bytes(body)
        #: The method of the request this answers.
        self.method = method
        #: The URL of the request this answers.
        self.url = url

    @staticmethod
    def _from_wit(response: _wit.Response, method: str, url: str) -> Response:
        return Response(
            response.status,
            [(h.name, h.value) for h in response.headers],
            response.body,
            method,
            url,
        )

    @property
    def ok(self) -> bool:
        """Whether the status is 2xx."""
        return 200 <= self.status < 300

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or ``None``."""
        lower = name.lower()
        return next((v for n, v in self.headers if n.lower() == lower), None)

    @property
    def text(self) -> str:
        """The body as text (invalid UTF-8 replaced)."""
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body decoded from JSON.

        Raises :class:`~cairn_guest.Failed`, naming the request, when the body
        is not JSON.
        """
        try:
            return _json.loads(self.body)
        except ValueError as e:
            raise Failed(
                f"{self.method} {self.url}: response body is not the expected JSON: {e}: "
                f"{self.body_excerpt()}"
            ) from None

    def raise_for_status(self) -> Response:
        """The response itself if its status is 2xx.

        Raises :class:`~cairn_guest.Failed` otherwise:
        ``GET <url> returned 500: <start of the body>``.
        """
        if self.ok:
            return self
        raise Failed(f"{self.method} {self.url} returned {self.status}: {self.body_excerpt()}")

    def body_excerpt(self) -> str:
        """The first 500 bytes of the body as text, for error messages."""
        if len(self.body) <= _EXCERPT:
            return self.text
        return self.body[:_EXCERPT].decode("utf-8", "ignore") + "…"

    def __repr__(self) -> str:
        return f"<Response {self.status} from {self.method} {self.url}, {len(self.body)} bytes>"


def request(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes | str | None = None,
    json: Any = None,
    timeout: float | None = None,
) -> Response:
    """Send one request and return its response, ``requests`` style::

        http.request("POST", f"{url}/_refresh", json={}, timeout=30)
    """
    r = Request(method, url)
    if headers:
        r.headers(headers)
    if json is not None:
        r.json(json)
    elif body is not None:
        r.body(body)
    if timeout is not None:
        r.timeout(timeout)
    return r.send()


def get(url: str, **kwargs: Any) -> Response:
    """A GET request to ``url``, sent (keyword arguments as :func:`request`)."""
    return request("GET", url, **kwargs)


def post(url: str, **kwargs: Any) -> Response:
    """A POST request to ``url``, sent (keyword arguments as :func:`request`)."""
    return request("POST", url, **kwargs)


def put(url: str, **kwargs: Any) -> Response:
    """A PUT request to ``url``, sent (keyword arguments as :func:`request`)."""
    return request("PUT", url, **kwargs)


def delete(url: str, **kwargs: Any) -> Response:
    """A DELETE request to ``url``, sent (keyword arguments as :func:`request`)."""
    return request("DELETE", url, **kwargs)
