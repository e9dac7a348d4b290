"""The status page's HTML: what it says for each state, and nothing unescaped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

from firebreak.daemon.overview import NextCycle, Overview, SourceOverview
from firebreak.history.freshness import SiteFreshness, SourceFreshness
from firebreak.metrics.page import runbook_page, status_page, trouble_page
from firebreak.scorecard import Scorecard

NOW = datetime(2026, 12, 3, 4, 0, tzinfo=UTC)


def site(name: str, **changes: object) -> SiteFreshness:
    fields: dict[str, object] = {
        "site": name,
        "fresh": True,
        "last_success_at": NOW - timedelta(hours=2),
        "last_attempt_at": NOW - timedelta(hours=2),
        "last_outcome": "success",
        "last_error": None,
        "snapshot_id": "0123456789abcdef" * 4,
        "bytes_added": 2048,
        "age_seconds": 7200.0,
    }
    fields.update(changes)
    return SiteFreshness(**fields)  # type: ignore[arg-type]


def source(name: str, sites: list[SiteFreshness], degraded: str | None = None) -> SourceOverview:
    counting = sum(1 for s in sites if s.counts)
    return SourceOverview(
        freshness=SourceFreshness(name, 86400.0, 2, counting, counting >= 2, sites),
        degraded=degraded,
        next_cycle=NextCycle(NOW + timedelta(hours=1), False, "in 1h, 2026-12-03 05:00 UTC"),
        rules=Scorecard(name, []),
    )


class Text(HTMLParser):
    """The page as a person reads it: its text, and every element's class."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def joined(self) -> str:
        return " ".join(" ".join(self.text).split())


def test_a_safe_source_reads_safe_with_each_site_card() -> None:
    seen = Overview(NOW, [source("www", [site("gra"), site("fsn")])])
    page = Text(status_page(seen, "web1", "0.14.0"))
    text = page.joined()
    assert "every source is safe (1 source)" in text
    assert "firebreak on web1" in text
    assert "gra fresh" in text and "fsn fresh" in text
    assert "01234567" in text and "0123456789abcdef0" not in text  # short ids
    assert "next cycle: in 1h" in text
    assert "restic 0.14.0" in text
    assert ("script", {}) not in [(tag, {}) for tag, _ in page.tags]
    refresh = [a for tag, a in page.tags if tag == "meta" and a.get("http-equiv") == "refresh"]
    assert refresh and refresh[0]["content"] == "60"


def test_an_unsafe_source_says_which_site_and_why() -> None:
    seen = Overview(
        NOW,
        [
            source(
                "www",
                [
                    site("gra"),
                    site(
                        "fsn", fresh=False, last_outcome="failed", last_error="SiteUnreachable: x"
                    ),
                    site("waw", damaged="restore drill failed 1h ago: DataCorrupt: bad pack"),
                ],
                degraded="losing gra leaves 0 of 2 required",
            ),
            source("db", [site("gra"), site("fsn")]),
        ],
    )
    text = Text(status_page(seen, "web1", "0.14.0")).joined()
    assert "NOT SAFE: www" in text
    assert "fsn STALE" in text and "last error: SiteUnreachable: x" in text
    assert "waw DAMAGED" in text and "DAMAGED: restore drill failed 1h ago" in text
    assert "placement DEGRADED: losing gra leaves 0 of 2 required" in text
    assert "db safe" in text


def test_nothing_from_the_history_or_config_reaches_the_page_unescaped() -> None:
    hostile = '<script>alert("x")</script>'
    seen = Overview(
        NOW,
        [source("www", [site("a", fresh=False, last_outcome="failed", last_error=hostile)])],
    )
    html = status_page(seen, hostile, hostile)
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert hostile in Text(html).joined()
    assert "<script>" not in trouble_page(hostile, hostile)


def test_the_history_unreadable_is_said_not_hidden() -> None:
    text = Text(trouble_page("web1", "database is locked")).joined()
    assert "status unknown: the run history cannot be read" in text
    assert "database is locked" in text


def test_the_runbook_has_an_anchor_for_every_alert_rule() -> None:
    from pathlib import Path

    import yaml

    rules = yaml.safe_load((Path(__file__).parents[3] / "deploy/prometheus/alerts.yml").read_text())
    alerts = [rule["alert"] for group in rules["groups"] for rule in group["rules"]]
    ids = {a.get("id") for tag, a in Text(runbook_page()).tags if tag == "h2"}
    assert alerts and {alert.lower() for alert in alerts} <= ids


def test_a_page_that_fails_answers_500_and_the_listener_goes_on() -> None:
    import urllib.error
    import urllib.request

    from prometheus_client import CollectorRegistry, generate_latest

    from firebreak.metrics.http import MetricsServer

    def broken() -> tuple[int, str]:
        raise RuntimeError("boom")

    server = MetricsServer(
        "127.0.0.1:0",
        lambda: generate_latest(CollectorRegistry()),
        lambda: (True, "ok"),
        lambda: (True, "ready"),
        pages={"/": broken, "/fine": lambda: (200, "<p>fine</p>")},
    )
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        try:
            urllib.request.urlopen(f"{base}/", timeout=5)  # loopback only
            raise AssertionError("a failing page answered 200")
        except urllib.error.HTTPError as exc:
            assert exc.code == 500
            assert b"boom" not in exc.read()
        with urllib.request.urlopen(f"{base}/fine", timeout=5) as answer:
            assert answer.read() == b"<p>fine</p>"
    finally:
        server.stop()


def test_head_answers_what_get_would_without_the_body() -> None:
    import http.client

    from prometheus_client import CollectorRegistry, generate_latest

    from firebreak.metrics.http import MetricsServer

    server = MetricsServer(
        "127.0.0.1:0",
        lambda: generate_latest(CollectorRegistry()),
        lambda: (True, "ok"),
        lambda: (False, "the history is at revision 0001"),
        pages={"/": lambda: (200, "<p>page</p>")},
    )
    server.start()
    try:
        for path, code, length in (("/", 200, 11), ("/readyz", 503, 32), ("/nope", 404, None)):
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
            connection.request("HEAD", path)
            answer = connection.getresponse()
            assert answer.status == code, path
            assert answer.read() == b""
            if length is not None:
                assert answer.getheader("Content-Length") == str(length), path
            connection.close()
    finally:
        server.stop()
