"""``firebreak drill --fire SITE``: the disaster rehearsal."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

import click

from firebreak.actions.fire_drill import fire_drill
from firebreak.actions.restore_drill import drill_site
from firebreak.cli.common import (
    Exit,
    Options,
    Working,
    cancel_on_signals,
    check_names,
    fail,
    load,
    runtime,
)
from firebreak.humanize import humanize_age, plural
from firebreak.outcomes import Status


@click.command()
@click.argument("source", required=False)
@click.option("--site", "sites", multiple=True, help="With SOURCE: only this site (repeatable).")
@click.option("--fire", "lost", metavar="SITE", help="The site to treat as destroyed.")
@click.option(
    "--scratch",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where to restore (default: a temporary directory in state_dir, removed after).",
)
@click.pass_obj
def drill(
    options: Options,
    source: str | None,
    sites: tuple[str, ...],
    lost: str | None,
    scratch: Path | None,
) -> None:
    """Restore drills. `drill SOURCE`: at each site, restore a random sample of the latest
    snapshot and verify it (what the daemon does on each site's drill_schedule).
    `drill --fire SITE`: rehearse losing SITE — restore every source that uses it from the
    other sites, compare the bytes with the live data, report recovery point and time.

    Exit 0 when everything came back intact, 4 otherwise.
    """
    config = load(options, check_environment=True)
    if lost is None:
        if source is None:
            fail("name a source to drill, or --fire SITE for the disaster rehearsal", Exit.CONFIG)
        check_names(options, config, [source], sites)
        rt = runtime(config)
        failed = False
        with Working() as working:
            for name in list(sites) or config.sources[source].sites:
                with working.on(f"restore drill of {source} at {name}: restoring a sample"):
                    run = drill_site(rt, source, name)
                if run.status == Status.SUCCESS:
                    proven = f"; {run.error_message}" if run.error_message else ""
                    verified = plural(run.files_new or 0, "file")
                    working.say(f"{name}: ok, {verified} verified from {run.snapshot_id}{proven}")
                else:
                    failed = True
                    working.say(f"{name}: {run.status}: {run.error_class}: {run.error_message}")
        raise SystemExit(Exit.FAILED if failed else Exit.OK)
    if lost not in config.sites:
        fail(f"no site {lost!r} in {options.config_path}", Exit.CONFIG)
    rt = runtime(config)
    cancel = threading.Event()
    base = scratch or config.state_dir / "drills"
    base.mkdir(parents=True, exist_ok=True)
    with (
        cancel_on_signals(cancel),
        tempfile.TemporaryDirectory(prefix="fire-", dir=base) as work,
        Working() as working,
        working.on(f"rehearsing the loss of {lost}: restoring its sources from the others"),
    ):
        results = fire_drill(rt, lost, Path(work), cancel)
    if not results:
        fail(f"no source uses site {lost!r}: nothing to rehearse", Exit.CONFIG)
    for result in results:
        if result.error:
            click.echo(f"{result.source}: LOST — {result.error}")
            continue
        age = humanize_age(result.recovery_point_seconds or 0)
        verdict = "intact" if result.passed else f"{plural(len(result.different), 'file')} DIFFER"
        click.echo(
            f"{result.source}: survives the loss of {lost}: restored from {result.site} in "
            f"{result.seconds:.1f}s, recovery point {age} ago, {result.files_compared} files "
            f"compared, {verdict}"
            + (
                f", {len(result.changed_since)} changed since the snapshot"
                if result.changed_since
                else ""
            )
        )
        if result.proven:
            click.echo(f"  {result.proven}")
        for path in result.different[:10]:
            click.echo(f"  differs: {path}")
    if cancel.is_set():
        raise SystemExit(Exit.INTERRUPTED)
    raise SystemExit(Exit.OK if all(result.passed for result in results) else Exit.FAILED)
