"""One checked connection to Label Studio through the SDK, with one-line errors.

``connect()`` takes the URL and API key from its arguments or from LABEL_STUDIO_URL /
LABEL_STUDIO_API_KEY. The key may be a legacy token (``Authorization: Token ...``; Label Studio
1.23 accepts those only when the organisation enabled them) or a personal access token (a JWT
refresh token: the SDK trades it for short-lived access tokens at /api/token/refresh/ and renews
them when they expire). The connection is checked with ``users.whoami`` before it is returned.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, TypeVar

import httpx
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from pose6d.errors import ServiceError

ENV_URL, ENV_KEY = "LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY"
BACKOFF_S = 0.5  # first wait; doubles each retry (0.5, 1, 2, 4 s for retries=4)
T = TypeVar("T")


class AdminError(ServiceError):
    """A Label Studio administration step failed; the message is one actionable line."""


def api_error_text(exc: BaseException) -> str:
    """A one-line reason from an SDK/HTTP exception: Label Studio's own detail when it sent one."""
    if isinstance(exc, ApiError):
        body = exc.body
        if isinstance(body, dict):
            detail = body.get("validation_errors") or body.get("detail") or body
            if isinstance(detail, dict):  # {"field": ["message", ...], ...}
                detail = "; ".join(f"{k}: {' '.join(map(str, v)) if isinstance(v, list) else v}"
                                   for k, v in detail.items())
            text = str(detail)
        elif isinstance(body, str) and not body.lstrip().startswith("<"):
            text = body
        else:
            text = "no details"
        return " ".join(f"HTTP {exc.status_code}: {text}".split())[:400]
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:400]


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: no connection, a timeout, or a 5xx / 429 answer."""
    if isinstance(exc, (httpx.TransportError, ConnectionError, TimeoutError)):
        return True
    return isinstance(exc, ApiError) and (exc.status_code or 0) in (429, 500, 502, 503, 504)


def with_retries(call: Callable[[], T], retries: int = 4, backoff_s: float = BACKOFF_S) -> T:
    """``call()``, retried ``retries`` times with exponential backoff on transient errors."""
    for attempt in range(retries + 1):
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - filtered right below
            if attempt >= retries or not is_transient(exc):
                raise
            time.sleep(backoff_s * 2 ** attempt)
    raise AssertionError("unreachable")


def _setting(value: str | None, env: str, what: str, flag: str) -> str:
    value = value if value is not None else os.environ.get(env)
    if not value or not value.strip():
        raise AdminError(f"no Label Studio {what}: pass {flag} or set {env}")
    return value.strip()


def normalize_url(url: str, what: str = "Label Studio URL") -> str:
    """``http(s)://host[:port][/path]`` without a trailing slash; AdminError otherwise."""
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")) or len(url.split("://", 1)[1]) == 0:
        raise AdminError(f"{what} must look like http://host:port, got {url!r}")
    return url


def resolve_url(url: str | None = None) -> str:
    """The Label Studio URL from ``url`` or $LABEL_STUDIO_URL, normalised."""
    return normalize_url(_setting(url, ENV_URL, "URL", "--url"))


def _key_error(url: str, exc: BaseException) -> AdminError:
    return AdminError(f"Label Studio refused the API key at {url} ({api_error_text(exc)}); use a "
                      "personal access token (Account & Settings > Personal Access Token) or a "
                      "legacy token if the organisation enabled them")


def check_connection(client: LabelStudio, url: str, retries: int = 4) -> Any:
    """``users.whoami()`` with retries; AdminError naming the URL or the key on failure."""
    try:
        # The SDK's own retries (2, on connection errors) are off here: this loop owns the backoff.
        return with_retries(lambda: client.users.whoami(request_options={"max_retries": 0}),
                            retries)
    except ApiError as exc:
        if exc.status_code in (401, 403):
            raise _key_error(url, exc) from None
        if exc.status_code is not None and 200 <= exc.status_code < 300:  # an unparsable answer
            raise AdminError(f"cannot reach Label Studio at {url}: the answer is not Label "
                             "Studio's API (check the URL)") from None
        if exc.status_code == 404:
            raise AdminError(f"cannot reach Label Studio at {url}: no Label Studio API there "
                             "(HTTP 404 for /api/current-user/whoami); check the URL") from None
        raise AdminError(f"cannot reach Label Studio at {url} ({api_error_text(exc)})") from None
    except (httpx.TransportError, ConnectionError, TimeoutError) as exc:
        raise AdminError(f"cannot reach Label Studio at {url} ({api_error_text(exc)}, "
                         f"{retries + 1} attempts); is it running? check the URL") from None
    except (ValueError, json.JSONDecodeError, httpx.HTTPError) as exc:  # e.g. HTML, not JSON
        raise AdminError(f"cannot reach Label Studio at {url}: the answer is not Label Studio's "
                         f"API ({api_error_text(exc)})") from None


def connect(url: str | None = None, api_key: str | None = None, retries: int = 4,
            timeout: float = 120.0) -> LabelStudio:
    """A checked ``LabelStudio`` client; AdminError (one line) when it cannot be had.

    url / api_key default to $LABEL_STUDIO_URL / $LABEL_STUDIO_API_KEY. retries: extra attempts
    (exponential backoff from 0.5 s) for connection errors, timeouts and 5xx answers.
    timeout: seconds per request (imports of big batches take a while).
    """
    url = resolve_url(url)
    api_key = _setting(api_key, ENV_KEY, "API key", "--api-key")
    try:  # the SDK rejects an expired or malformed JWT right here
        client = LabelStudio(base_url=url, api_key=api_key, timeout=timeout)
    except ApiError as exc:
        raise _key_error(url, exc) from None
    check_connection(client, url, retries)
    return client


def sdk_call(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """An SDK call whose failure becomes one AdminError line saying what was being done."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - ApiError, transport errors etc.: one line
        raise AdminError(f"{what} failed: {api_error_text(exc)}") from None
