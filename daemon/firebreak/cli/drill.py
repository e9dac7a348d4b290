"""``firebreak drill --fire SITE``: the disaster rehearsal."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

import click

from firebreak.cli.common import Exit, Options, cancel_on_signals, fail, load, runtime
from firebreak.config.durations import humanize_age
from firebreak.cycles.drill import fire_drill


@click.command()
@click.option(
    "--fire", "lost", required=True, metavar="SITE", help="The site to treat as destroyed."
)
@click.option(
    "--scratch",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where to restore (default: a temporary directory in state_dir, removed after).",
)
@click.pass_obj
def drill(options: Options, lost: str, scratch: Path | None) -> None:
    """Rehearse losing SITE: restore every source that uses it from the other sites,
    compare the bytes with the live data, report the recovery point and the time taken.

    Exit 0 when every source came back intact, 4 otherwise.
    """
    config = load(options, check_environment=True)
    if lost not in config.sites:
        fail(f"no site {lost!r} in {options.config_path}", Exit.CONFIG)
    rt = runtime(config)
    cancel = threading.Event()
    base = scratch or config.state_dir / "drills"
    base.mkdir(parents=True, exist_ok=True)
    with cancel_on_signals(cancel), tempfile.TemporaryDirectory(prefix="fire-", dir=base) as work:
        results = fire_drill(rt, lost, Path(work), cancel)
    if not results:
        fail(f"no source uses site {lost!r}: nothing to rehearse", Exit.CONFIG)
    for result in results:
        if result.error:
            click.echo(f"{result.source}: LOST — {result.error}")
            continue
        age = humanize_age(result.recovery_point_seconds or 0)
        verdict = "intact" if result.passed else f"{len(result.different)} file(s) DIFFER"
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
        for path in result.different[:10]:
            click.echo(f"  differs: {path}")
    if cancel.is_set():
        raise SystemExit(Exit.INTERRUPTED)
    raise SystemExit(Exit.OK if all(result.passed for result in results) else Exit.FAILED)
