"""The notifiers' one door to the network: an HTTP POST whose failures are
mapped to the outbox's two outcomes.

Retried later (:class:`DeliveryError`): connection errors, timeouts, HTTP 408
(request timeout), 425 (too early), 429 (rate limited) and every 5xx, i.e. the
receiver is away, busy or broken for now. Dead-lettered at once
(:class:`PermanentDeliveryError`): any other 4xx (the receiver understood and
refused: a wrong token, a malformed request; sending the same again cannot help),
a 3xx (redirects are not followed: a signed request should not wander to another
host, and a moved endpoint belongs in the config) and a URL that cannot work.
"""

from __future__ import annotations

from collections.abc import Mapping
from email.header import Header

import httpx

from hub.plugins import DeliveryError, PermanentDeliveryError

RETRYABLE_STATUS = frozenset({408, 425, 429})


def header_value(text: str) -> str:
    """HTTP header values are Latin-1 on the wire; anything beyond ASCII is sent as
    an RFC 2047 encoded word (``=?utf-8?b?...?=``), which ntfy decodes."""
    if text.isascii():
        return text
    return Header(text, "utf-8").encode(maxlinelen=10_000)


def client(timeout_s: float, user_agent: str = "fithub") -> httpx.Client:
    return httpx.Client(timeout=timeout_s, follow_redirects=False, headers={"User-Agent": user_agent})


def post(http: httpx.Client, what: str, url: str, body: bytes, headers: Mapping[str, str]) -> httpx.Response:
    """POST ``body``; returns the 2xx response or raises as the module docstring says.
    ``what`` names the notifier in every error ("webhook crm")."""
    try:
        response = http.post(url, content=body, headers=dict(headers))
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise PermanentDeliveryError(f"{what}: cannot POST to {url}: {exc}") from exc
    except httpx.TimeoutException as exc:
        raise DeliveryError(f"{what}: POST {url} timed out ({type(exc).__name__})") from exc
    except httpx.HTTPError as exc:  # connection refused, reset, DNS, protocol errors
        raise DeliveryError(f"{what}: POST {url} failed: {type(exc).__name__}: {exc}") from exc
    check_status(what, url, response)
    return response


def check_status(what: str, url: str, response: httpx.Response) -> None:
    code = response.status_code
    if 200 <= code < 300:
        return
    detail = f"{what}: POST {url} answered HTTP {code} {response.reason_phrase}"
    text = response.text.strip()[:200] if response.content else ""
    if text:
        detail += f": {text}"
    if code in RETRYABLE_STATUS or code >= 500:
        raise DeliveryError(detail)
    if 300 <= code < 400:
        location = response.headers.get("location")
        raise PermanentDeliveryError(f"{detail} (redirects are not followed; configure the url {location or 'it points to'})")
    raise PermanentDeliveryError(detail)
