"""POSTing JSON to an HTTP endpoint (the OpenAI-compatible evaluator) with bounded retries and exponential backoff.

Retried: a refused or dropped connection, a timeout, HTTP 408/425/429/5xx, and a reply that is not the expected JSON
(a proxy's HTML page, a truncated body). Not retried: other 4xx answers (a wrong key, model or path), which the
same request would get again. After the last attempt one sentence names the endpoint, the attempts and the last
fault. A secret sent in the headers (the API key) is cut out of every message, even when the endpoint echoes it.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

RETRIED_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
REDACTED = "[redacted]"


@dataclass(frozen=True)
class RetryPolicy:
    """`attempts` tries in all; before try k+1 the wait is backoff_s * 2**(k-1), at most max_backoff_s
    (0.5, 1, 2 s by default: an endpoint restarting within a few seconds is waited for, one that is down is not)."""

    attempts: int = 4
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0

    def wait_before(self, attempt: int) -> float:
        """Seconds to wait before 1-based `attempt` (none before the first)."""
        return 0.0 if attempt <= 1 else min(self.backoff_s * 2 ** (attempt - 2), self.max_backoff_s)


DEFAULT_RETRY = RetryPolicy()


class _Retryable(Exception):
    """One attempt's fault that another attempt may not meet."""


def post_json(
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    timeout_s: float,
    error: type[Exception],
    accept: Callable[[Any], bool] = lambda reply: True,
    policy: RetryPolicy | None = None,
    sleep: Callable[[float], None] | None = None,
) -> Any:
    """The endpoint's JSON reply for which `accept` holds; raises `error` with one sentence once the attempts are
    spent or at once for a reply that retrying cannot change."""
    policy = policy or DEFAULT_RETRY
    sleep = sleep or time.sleep
    secrets = [value.split()[-1] for key, value in headers.items() if key.lower() == "authorization" and value]
    data = json.dumps(body).encode()
    last = "no attempt made"
    for attempt in range(1, policy.attempts + 1):
        sleep(policy.wait_before(attempt))
        try:
            return _attempt(url, data, headers, timeout_s, accept)
        except _Retryable as fault:
            last = str(fault)
        except urllib.error.HTTPError as fault:  # a 4xx that another try would get again
            raise error(
                _redact(
                    f"The evaluator endpoint {url} refused the request: HTTP {fault.code} "
                    f"{fault.reason}; check evaluation.evaluator.base_url, model and the API key",
                    secrets,
                )
            ) from None
    raise error(
        _redact(
            f"The evaluator endpoint {url} failed {policy.attempts} attempts (last: {last}); the "
            "iteration's data is kept: once the endpoint answers, resume the run with resume=true",
            secrets,
        )
    )


def _attempt(url: str, data: bytes, headers: dict[str, str], timeout_s: float, accept: Callable[[Any], bool]) -> Any:
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            text = response.read().decode("utf-8", errors="replace")
    except urllib.error.HTTPError as fault:
        if fault.code in RETRIED_STATUSES:
            raise _Retryable(f"HTTP {fault.code} {fault.reason}") from None
        raise
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as fault:
        reason = getattr(fault, "reason", fault)
        raise _Retryable(f"{type(fault).__name__}: {reason}") from None
    try:
        reply = json.loads(text)
    except json.JSONDecodeError:
        raise _Retryable(f"a reply that is not JSON ({len(text)} characters)") from None
    if not accept(reply):
        raise _Retryable("a JSON reply without the expected fields")
    return reply


def _redact(message: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            message = message.replace(secret, REDACTED)
    return message


def has_choices(reply: Any) -> bool:
    """A chat-completions reply: a JSON object with a non-empty `choices` list of objects."""
    choices = reply.get("choices") if isinstance(reply, dict) else None
    return isinstance(choices, list) and bool(choices) and isinstance(choices[0], dict)
