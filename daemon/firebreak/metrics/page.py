"""The pages a person reads on the metrics listener: the status page at ``/`` (what
``firebreak status`` says, for a phone) and the alerts' runbook at ``/runbook``.

Plain HTML and a little CSS: no script, nothing fetched from elsewhere. Every value from the
config or the history is escaped.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from html import escape
from importlib import resources

from firebreak import __version__
from firebreak.daemon.overview import HostOverview, Overview, SourceOverview
from firebreak.history.freshness import SiteFreshness
from firebreak.humanize import format_bytes, format_seconds, humanize_age, plural, short_id

STYLE = """
:root { color-scheme: light dark; --ok: #1a7f37; --bad: #cf222e; --warn: #9a6700; }
body { font: 16px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 70rem; padding: 0.8rem; }
h1 { font-size: 1.3rem; margin: 0; }
h2 { font-size: 1.15rem; margin: 0 0 0.3rem; }
h3 { font-size: 1rem; margin: 0 0 0.3rem; }
.meta, .next { color: GrayText; font-size: 0.9rem; margin: 0.2rem 0; }
.verdict { font-weight: bold; font-size: 1.1rem; padding: 0.4rem 0.6rem; border-radius: 0.3rem; }
.verdict.ok { background: var(--ok); color: #fff; }
.verdict.bad { background: var(--bad); color: #fff; }
section { border-top: 1px solid GrayText; margin-top: 1rem; padding-top: 0.6rem; }
.badge { font-size: 0.8rem; padding: 0.1rem 0.4rem; border-radius: 0.2rem; color: #fff;
  vertical-align: middle; }
.badge.ok { background: var(--ok); } .badge.bad { background: var(--bad); }
.badge.warn { background: var(--warn); }
ul.sites { list-style: none; padding: 0; margin: 0.5rem 0 0; display: grid; gap: 0.6rem;
  grid-template-columns: repeat(auto-fill, minmax(16rem, 1fr)); }
li.site { border: 1px solid GrayText; border-left-width: 0.4rem; border-radius: 0.3rem;
  padding: 0.4rem 0.6rem; }
li.site.ok { border-left-color: var(--ok); } li.site.bad { border-left-color: var(--bad); }
dl { display: grid; grid-template-columns: auto 1fr; gap: 0 0.6rem; margin: 0; }
dt { color: GrayText; } dd { margin: 0; overflow-wrap: anywhere; }
.problem { color: var(--bad); overflow-wrap: anywhere; margin: 0.3rem 0 0; }
.warning { color: var(--warn); overflow-wrap: anywhere; }
"""

# How a site's state reads, and whether it is good.
STATES = {
    "fresh": ("fresh", "ok"),
    "stale": ("STALE", "bad"),
    "damaged": ("DAMAGED", "bad"),
    "lost": ("LOST", "bad"),
}


def status_page(seen: Overview, host: str, restic_version: str) -> str:
    unsafe = [s.freshness.source for s in seen.sources if not s.freshness.safe]
    if unsafe:
        verdict = f"NOT SAFE: {', '.join(unsafe)}"
    else:
        verdict = f"every source is safe ({plural(len(seen.sources), 'source')})"
    body = [
        "<header>",
        f"<h1>firebreak on {escape(host)}</h1>",
        f'<p class="verdict {"bad" if unsafe else "ok"}">{escape(verdict)}</p>',
        f'<p class="meta">as of {_when(seen.generated_at)} · firebreak {escape(__version__)}'
        f" · restic {escape(restic_version)}"
        ' · <a href="/runbook">runbook</a> · <a href="/metrics">metrics</a></p>',
        "</header>",
    ]
    body += [_source(source, seen.generated_at) for source in seen.sources]
    title = f"{'NOT SAFE' if unsafe else 'safe'} — firebreak on {host}"
    return _document(title, "\n".join(body), refresh=60)


def fleet_page(fleet: list[HostOverview], now: datetime, restic_version: str) -> str:
    """Every host of the fleet: its daemon's heartbeat and its sources, one section each."""
    troubled = [host.host for host in fleet if not host.safe]
    if not fleet:
        verdict, good = "no daemon has recorded a heartbeat in this history yet", False
    elif troubled:
        verdict, good = f"NOT SAFE: {', '.join(troubled)}", False
    else:
        verdict, good = f"every host is alive and safe ({plural(len(fleet), 'host')})", True
    body = [
        "<header>",
        "<h1>firebreak fleet</h1>",
        f'<p class="verdict {"ok" if good else "bad"}">{escape(verdict)}</p>',
        f'<p class="meta">as of {_when(now)} · firebreak {escape(__version__)}'
        f" · restic {escape(restic_version)}"
        ' · <a href="/runbook">runbook</a> · <a href="/metrics">metrics</a></p>',
        "</header>",
    ]
    for host in fleet:
        badge = "ok" if host.state == "alive" else "bad"
        lines = [
            "<section>",
            f'<h2>{escape(host.host)} <span class="badge {badge}">{escape(host.state)}</span></h2>',
            f'<p class="meta">last seen {_ago(host.last_seen_at, now)}'
            f" · firebreak {escape(host.version)}</p>",
        ]
        if host.sources is None:
            lines.append(
                '<p class="problem">what its sources ask could not be read: upgrade firebreak '
                "here</p>"
            )
        else:
            for source in host.sources:
                state = "ok" if source.safe else "bad"
                stale = [site.site for site in source.sites if not site.counts]
                detail = f" (not counting: {', '.join(stale)})" if stale else ""
                lines.append(
                    f'<p><span class="badge {state}">{"safe" if source.safe else "NOT SAFE"}'
                    f"</span> {escape(source.source)}: {source.fresh_sites} of "
                    f"{source.required_fresh_sites} required sites count{escape(detail)}</p>"
                )
        lines.append("</section>")
        body.append("\n".join(lines))
    title = f"{'safe' if good else 'NOT SAFE'} — firebreak fleet"
    return _document(title, "\n".join(body), refresh=60)


def trouble_page(host: str, trouble: str) -> str:
    """The history cannot be read: say so, and why, instead of a status nobody can check."""
    body = (
        f"<h1>firebreak on {escape(host)}</h1>"
        '<p class="verdict bad">status unknown: the run history cannot be read</p>'
        f'<p class="problem">{escape(trouble)}</p>'
        '<p class="meta"><a href="/runbook#firebreakdatabasedown">runbook</a></p>'
    )
    return _document(f"status unknown — firebreak on {host}", body, refresh=60)


def runbook_page() -> str:
    """docs/runbook.md as HTML, each alert's heading an anchor (``#firebreaksitestale``)."""
    return _document("firebreak runbook", _runbook_html())


@cache
def _runbook_html() -> str:
    import markdown  # only when someone opens the runbook

    text = resources.files("firebreak.docs").joinpath("runbook.md").read_text(encoding="utf-8")
    return markdown.markdown(text, extensions=["fenced_code", "tables", "toc"])


def _source(source: SourceOverview, now: datetime) -> str:
    fresh = source.freshness
    state = ("safe", "ok") if fresh.safe else ("NOT SAFE", "bad")
    parts = [
        f'<section id="source-{escape(fresh.source)}">',
        f'<h2>{escape(fresh.source)} <span class="badge {state[1]}">{state[0]}</span></h2>',
        f'<p class="meta">{fresh.fresh_sites} of {plural(len(fresh.sites), "site")} count'
        f" (fresh, not damaged or lost), {fresh.required_fresh_sites} required,"
        f" max_age {escape(format_seconds(fresh.max_age_seconds))}</p>",
        f'<p class="next">next cycle: {escape(source.next_cycle.text)}</p>',
    ]
    if source.degraded is not None:
        parts.append(f'<p class="warning">placement DEGRADED: {escape(source.degraded)}</p>')
    if source.rules.rules:
        broken = source.rules.broken_required
        parts.append(
            f'<p class="{"warning" if broken else "meta"}">{escape(source.rules.line())}</p>'
        )
    parts.append('<ul class="sites">')
    parts += [_site(site, now) for site in fresh.sites]
    parts += ["</ul>", "</section>"]
    return "\n".join(parts)


def _site(site: SiteFreshness, now: datetime) -> str:
    label, tone = STATES[site.state]
    rows = [
        ("last success", _ago(site.last_success_at, now)),
        ("last attempt", _attempt(site, now)),
        ("snapshot", short_id(site.snapshot_id)),
        ("added", format_bytes(site.bytes_added)),
        ("restore drill", _drill(site, now)),
    ]
    facts = "".join(f"<dt>{name}</dt><dd>{escape(value)}</dd>" for name, value in rows)
    problems = [
        f"{what}: {why}"
        for what, why in (("LOST", site.lost), ("DAMAGED", site.damaged))
        if why is not None
    ]
    if site.last_error and not site.lost:  # a lost site's last error says the same
        problems.append(f"last error: {site.last_error}")
    said = "".join(f'<p class="problem">{escape(problem)}</p>' for problem in problems)
    return (
        f'<li class="site {tone}" id="site-{escape(site.site)}">'
        f'<h3>{escape(site.site)} <span class="badge {tone}">{label}</span></h3>'
        f"<dl>{facts}</dl>{said}</li>"
    )


def _attempt(site: SiteFreshness, now: datetime) -> str:
    if site.last_attempt_at is None:
        return "never"
    return f"{_ago(site.last_attempt_at, now)}: {site.last_outcome or '-'}"


def _drill(site: SiteFreshness, now: datetime) -> str:
    if site.last_drill_success_at is None:
        return "never passed"
    return f"passed {_ago(site.last_drill_success_at, now)}"


def _ago(moment: datetime | None, now: datetime) -> str:
    return "never" if moment is None else f"{humanize_age((now - moment).total_seconds())} ago"


def _when(moment: datetime) -> str:
    return escape(moment.strftime("%Y-%m-%d %H:%M:%S UTC"))


def _document(title: str, body: str, refresh: int | None = None) -> str:
    again = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{again}<title>{escape(title)}</title><style>{STYLE}</style></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )
