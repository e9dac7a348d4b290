"""``firebreak check``: restic check at a source's sites, or at one site."""

from __future__ import annotations

import threading

import click

from firebreak.actions.check import check_site
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
from firebreak.outcomes import Status


@click.command()
@click.argument("source", required=False)
@click.option("--site", "sites", multiple=True, help="Only this site (repeatable).")
@click.option(
    "--read-all-data",
    is_flag=True,
    help="Read every pack, not the rotating 1/N (slow: downloads the whole repository).",
)
@click.pass_obj
def check(
    options: Options, source: str | None, sites: tuple[str, ...], read_all_data: bool
) -> None:
    """Check the repositories of SOURCE's sites (or of --site S): structure, and a rotating
    1/N of the pack data (check_read_data_subsets).

    Exit 0 when every check passed, 4 when one found a problem or could not run.
    """
    config = load(options, check_environment=True)
    if source is None and not sites:
        fail("name a source, or --site SITE", Exit.CONFIG)
    if source is not None:
        check_names(options, config, [source], sites)
        names = list(sites) or list(config.sources[source].sites)
    else:
        unknown = [name for name in sites if name not in config.sites]
        if unknown:
            fail(f"no site {', '.join(map(repr, unknown))} in {options.config_path}", Exit.CONFIG)
        names = list(dict.fromkeys(sites))
    rt = runtime(config)
    cancel = threading.Event()
    failed = False
    what = "every pack" if read_all_data else "structure and a part of the data"
    with cancel_on_signals(cancel), Working() as working:
        for name in names:
            with working.on(f"restic check at {name} ({what})"):
                run = check_site(rt, name, cancel, read_all_data=read_all_data)
            if run.status == Status.SUCCESS:
                working.say(f"{name}: ok ({run.duration_seconds or 0:.1f}s)")
            else:
                failed = True
                working.say(f"{name}: {run.status}: {run.error_class}: {run.error_message}")
            if cancel.is_set():
                raise SystemExit(Exit.INTERRUPTED)
    raise SystemExit(Exit.FAILED if failed else Exit.OK)
