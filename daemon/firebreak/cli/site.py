"""``firebreak site``: decisions about one site."""

from __future__ import annotations

import threading

import click

from firebreak.actions.immutability import prove_immutable
from firebreak.actions.site_reset import reset_site
from firebreak.cli.common import Exit, Options, cancel_on_signals, fail, load, runtime
from firebreak.outcomes import Status


@click.group()
def site() -> None:
    """Decisions about one site (recorded in the run history)."""


@site.command("reset")
@click.argument("name")
@click.option(
    "--reason",
    required=True,
    help="Why (recorded with the decision): what happened to the old repository.",
)
@click.option(
    "--create",
    is_flag=True,
    help="Where there is no repository at all, create a new one (check a disk is mounted).",
)
@click.pass_obj
def site_reset(options: Options, name: str, reason: str, create: bool) -> None:
    """Record which repository site NAME holds from now on, after it was found lost.

    A site whose repository is gone or replaced is LOST: firebreak creates nothing there and
    counts it toward no source's safety. When the old repository will not come back, this
    records the one standing at the site now, or with --create makes a new one where there
    is none. Its older snapshots are not there: the next backup writes a full copy. Exit 0
    when recorded, 4 when there is nothing to record or the site could not be reached.
    """
    config = load(options, check_environment=True)
    if name not in config.sites:
        known = ", ".join(config.sites)
        fail(f"no site {name!r} in {options.config_path} (sites: {known})", Exit.CONFIG)
    if not reason.strip():
        fail("--reason must say why: it is recorded with the decision", Exit.CONFIG)
    rt = runtime(config)
    cancel = threading.Event()
    with cancel_on_signals(cancel):
        done = reset_site(rt, name, reason.strip(), create=create, cancel=cancel)
    run = done.run
    if run.status != Status.SUCCESS or done.now is None:
        if cancel.is_set():
            raise SystemExit(Exit.INTERRUPTED)
        fail(f"site {name}: {run.error_class}: {run.error_message}", Exit.FAILED)
    how = "created and recorded" if done.created else "recorded"
    was = f" (it held {done.before[:8]} until now)" if done.before else ""
    same = done.before == done.now
    click.echo(f"site {name}: repository {done.now[:8]} {how}{was}: {reason.strip()}")
    if not same:
        click.echo(
            f"site {name}: its earlier snapshots are not in this repository; the next backup "
            "there writes a full copy"
        )
    raise SystemExit(Exit.OK)


@site.command("prove-immutable")
@click.argument("names", nargs=-1)
@click.pass_obj
def site_prove_immutable(options: Options, names: tuple[str, ...]) -> None:
    """Prove that append-only sites refuse deletes: write a tiny canary snapshot at each
    and try to forget it (the daemon does it on each site's immutability_schedule).

    NAMES: sites with append_only: true (default: all of them). Exit 0 when every site
    refused, 4 when one accepted the delete (NotImmutable) or could not be asked.
    """
    config = load(options, check_environment=True)
    declared = [name for name, site in config.sites.items() if site.append_only]
    unknown = [name for name in names if name not in config.sites]
    if unknown:
        known = ", ".join(config.sites)
        fail(
            f"no site {', '.join(map(repr, unknown))} in {options.config_path} (sites: {known})",
            Exit.CONFIG,
        )
    undeclared = [name for name in names if name not in declared]
    if undeclared:
        fail(
            f"{', '.join(undeclared)}: not declared append_only: true, so nothing to prove "
            "(a site that refuses deletes without it is found out by retention)",
            Exit.CONFIG,
        )
    chosen = list(dict.fromkeys(names)) or declared
    if not chosen:
        fail(f"no site in {options.config_path} is declared append_only: true", Exit.CONFIG)
    rt = runtime(config)
    cancel = threading.Event()
    failed = False
    with cancel_on_signals(cancel):
        for name in chosen:
            run = prove_immutable(rt, name, cancel, patience=None)
            if run.status == Status.SUCCESS:
                click.echo(f"{name}: immutable: {run.error_message}")
            else:
                failed = True
                click.echo(f"{name}: {run.status}: {run.error_class}: {run.error_message}")
            if cancel.is_set():
                raise SystemExit(Exit.INTERRUPTED)
    raise SystemExit(Exit.FAILED if failed else Exit.OK)
