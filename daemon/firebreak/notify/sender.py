"""Sending notifications without ever breaking or delaying a backup.

Every request runs on its own daemon thread with a timeout; a failure is logged and that is
all. The cycle does not wait for it.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.request
from collections.abc import Mapping
from string import Template

from firebreak.config.model import Config
from firebreak.config.notify import Webhook
from firebreak.config.references import UnresolvedReference, interpolate
from firebreak.humanize import plural
from firebreak.outcomes import Status

log = logging.getLogger(__name__)
DEAD_MAN_TIMEOUT = 10.0


class CycleNotifier:
    """What a cycle tells the outside world: started, and how it ended."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._sent: list[threading.Thread] = []

    def started(self, source: str) -> None:
        url = self.config.sources[source].healthchecks.start
        if url:
            self._send("GET", url, None, {}, DEAD_MAN_TIMEOUT, f"start ping for {source}")

    def finished(
        self,
        source: str,
        status: Status,
        failed_sites: list[str],
        sites_total: int,
        previous: Status | None,
    ) -> None:
        """previous: the outcome of the source's cycle before this one (for 'recovery')."""
        checks = self.config.sources[source].healthchecks
        ping = checks.success if status == Status.SUCCESS else checks.fail
        if ping:
            self._send("GET", ping, None, {}, DEAD_MAN_TIMEOUT, f"{status} ping for {source}")
        event = _event(status, previous)
        fields = {
            "source": source,
            "event": event,
            "status": str(status),
            "sites_ok": str(sites_total - len(failed_sites)),
            "sites_total": str(sites_total),
            "failed_sites": ", ".join(failed_sites),
        }
        message = (
            f"firebreak: {source} {event}: {fields['sites_ok']} of {plural(sites_total, 'site')} ok"
        )
        if failed_sites:
            message += f"; failed: {fields['failed_sites']}"
        fields["message"] = message
        fields["json_message"] = json.dumps(message)[1:-1]
        for hook in self.config.notify.webhooks:
            if event in hook.on:
                body, content_type = _body(hook, fields)
                headers = {"Content-Type": content_type, **hook.headers}
                timeout = hook.timeout.total_seconds()
                self._send("POST", hook.url, body, headers, timeout, f"webhook for {source}")

    def wait(self, timeout: float) -> None:
        """For tests and for a clean exit: let sends in flight finish (bounded)."""
        for thread in self._sent:
            thread.join(timeout)

    def _send(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: Mapping[str, str],
        timeout: float,
        what: str,
    ) -> None:
        thread = threading.Thread(
            target=_request,
            args=(method, url, body, dict(headers), timeout, what),
            name=f"notify: {what}",
            daemon=True,
        )
        self._sent = [t for t in self._sent if t.is_alive()] + [thread]
        thread.start()


def _event(status: Status, previous: Status | None) -> str:
    if status == Status.SUCCESS:
        failed_before = previous in (Status.FAILED, Status.PARTIAL, Status.INTERRUPTED)
        return "recovery" if failed_before else "success"
    return "partial" if status == Status.PARTIAL else "failure"


def _body(hook: Webhook, fields: dict[str, str]) -> tuple[bytes, str]:
    if hook.template is None:
        return json.dumps(fields).encode(), hook.content_type or "application/json"
    text = Template(hook.template).safe_substitute(fields)
    return text.encode(), hook.content_type or "text/plain; charset=utf-8"


def _request(
    method: str, url: str, body: bytes | None, headers: dict[str, str], timeout: float, what: str
) -> None:
    try:
        resolved_url = interpolate(url)
        resolved = {key: interpolate(value) for key, value in headers.items()}
    except UnresolvedReference as exc:
        log.warning("%s not sent: %s", what, exc)
        return
    request = urllib.request.Request(resolved_url, data=body, headers=resolved, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            response.read(1024)
    except Exception as exc:  # any failure: log it, never raise into a backup
        log.warning("%s failed: %s", what, type(exc).__name__ if "${" in url else exc)
