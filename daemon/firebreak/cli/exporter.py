"""``firebreak exporter``: /metrics without the daemon, for hosts that back up from the CLI
(cron) or that only watch a fleet's shared PostgreSQL history."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import click

from firebreak.cli.common import Exit, Options, fail, load
from firebreak.history.database import DatabaseError, make_engine
from firebreak.metrics.collector import ScrapeInputs
from firebreak.metrics.exporter import database_ready, serve
from firebreak.outcomes import ResticUnavailable
from firebreak.restic.program import detect_version


@click.command()
@click.option("--listen", help="host:port to serve on (default: metrics.listen from the config).")
@click.option(
    "--host",
    "host",
    help=(
        "Whose runs to serve: a host name as recorded (default: this machine's, host:), "
        "judged against this config's sources and sites."
    ),
)
@click.option(
    "--fleet",
    is_flag=True,
    help=(
        "Serve every host whose daemon records a heartbeat in this history, each with a host "
        "label, judged by what its own daemon recorded (not this config)."
    ),
)
@click.pass_obj
def exporter(options: Options, listen: str | None, host: str | None, fleet: bool) -> None:
    """Serve /metrics, /healthz and /readyz from the run history until SIGTERM."""
    if options.verbose == 0:
        logging.getLogger().setLevel(logging.INFO)
    # The exporter reads the history only: it needs none of the sites' secrets.
    config = load(options)
    if host is not None and not host.strip():
        fail("--host needs a host name, as the history records it", Exit.CONFIG)
    if host is not None and fleet:
        fail("--host and --fleet: choose one (--fleet serves every host)", Exit.CONFIG)
    try:
        engine = make_engine(config.database_url)
    except DatabaseError as exc:
        fail(str(exc), Exit.NOT_READY)
    try:
        restic_version = str(detect_version(config.restic.binary))
    except ResticUnavailable:
        restic_version = "unknown"
    address = listen or config.metrics.listen
    try:
        server = serve(
            config.metrics,
            ScrapeInputs(
                config=lambda: config,
                engine=lambda: engine,
                restic_version=lambda: restic_version,
                host=None if host is None else lambda: host,
            ),
            healthy=lambda: (True, "ok"),
            ready=database_ready(lambda: engine),
            listen=address,
            fleet=fleet,
        )
    except OSError as exc:
        fail(f"cannot serve on {address}: {exc.strerror}", Exit.NOT_READY)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stop.wait()
    server.stop()
