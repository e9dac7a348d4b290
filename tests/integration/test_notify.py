"""Webhooks and dead-man pings, received by a local HTTP server; a notification that fails or
hangs never breaks or delays the backup."""

from __future__ import annotations

import json
import socket
import time

import pytest

from firebreak.actions.cycle import run_cycle
from firebreak.notify.sender import CycleNotifier
from firebreak.outcomes import Status
from tests.support.receiver import Receiver, receiver_fixture  # noqa: F401
from tests.support.setup import Setup


def test_webhooks_and_pings_follow_the_cycles(
    setup: Setup, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FB_HOOK_TOKEN", "tok-123")
    setup.local_site("a")
    setup.local_site("b")
    setup.source(
        "www",
        ["a", "b"],
        healthchecks={
            "start": f"{receiver.url}/hc/start",
            "success": f"{receiver.url}/hc/ok",
            "fail": f"{receiver.url}/hc/fail",
        },
    )
    setup.top["notify"] = {
        "webhooks": [
            {
                "url": f"{receiver.url}/json",
                "headers": {"Authorization": "Bearer ${FB_HOOK_TOKEN}"},
            },
            {
                "url": f"{receiver.url}/slack",
                "template": '{"text": "$json_message"}',
                "content_type": "application/json",
                "on": ["failure"],
            },
        ]
    }
    rt = setup.runtime()

    def cycle() -> Status:
        notifier = CycleNotifier(rt.config)
        status = run_cycle(rt, "www", notifier=notifier).status
        notifier.wait(10)
        return status

    assert cycle() == Status.SUCCESS
    assert receiver.paths() == ["/hc/start", "/hc/ok"]  # success is not a webhook event by default

    receiver.requests.clear()
    (setup.dir / "repo-b" / "config").rename(setup.dir / "repo-b" / "config.away")  # b breaks
    setup.sites["b"]["init"] = "never"
    rt = setup.runtime()
    assert cycle() == Status.FAILED
    assert sorted(receiver.paths()) == ["/hc/fail", "/hc/start", "/json", "/slack"]
    [(_, _, headers, body)] = [r for r in receiver.requests if r[1] == "/json"]
    assert headers["Authorization"] == "Bearer tok-123"
    assert headers["Content-Type"] == "application/json"
    sent = json.loads(body)
    assert sent["event"] == "failure" and sent["failed_sites"] == "b" and sent["sites_ok"] == "1"
    [slack] = [json.loads(r[3]) for r in receiver.requests if r[1] == "/slack"]
    assert slack == {"text": "firebreak: www failure: 1 of 2 sites ok; failed: b"}

    receiver.requests.clear()
    (setup.dir / "repo-b" / "config.away").rename(setup.dir / "repo-b" / "config")
    assert cycle() == Status.SUCCESS
    assert sorted(receiver.paths()) == ["/hc/ok", "/hc/start", "/json"]
    [recovery] = [json.loads(r[3]) for r in receiver.requests if r[1] == "/json"]
    assert recovery["event"] == "recovery"


def test_a_hanging_or_dead_endpoint_never_delays_or_breaks_the_backup(
    setup: Setup, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}/hook"
    setup.local_site("a")
    setup.source(
        "www",
        ["a"],
        healthchecks={"start": f"{receiver.url}/slow/start", "fail": dead, "success": dead},
    )
    setup.top["notify"] = {
        "webhooks": [
            {"url": f"{receiver.url}/slow/hook", "on": ["success", "failure"], "timeout": "2s"}
        ]
    }
    rt = setup.runtime()
    run_cycle(rt, "www")  # creates the repository, so the timed cycle below is a plain backup
    notifier = CycleNotifier(rt.config)

    started = time.monotonic()
    report = run_cycle(rt, "www", notifier=notifier)
    elapsed = time.monotonic() - started

    assert report.status == Status.SUCCESS
    assert elapsed < 4, f"the cycle waited for its notifications ({elapsed:.1f}s)"
    notifier.wait(10)
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("success ping for www failed") for m in messages), messages
    assert any(m.startswith("webhook for www failed") for m in messages), messages
