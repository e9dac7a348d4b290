"""``firebreak forget``: apply a source's retention policy now."""

from __future__ import annotations

import threading
from datetime import UTC

import click

from firebreak.actions.retention import apply_retention
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
from firebreak.humanize import plural
from firebreak.outcomes import Operation, Status
from firebreak.restic.messages import ForgetDecision


@click.command()
@click.argument("source")
@click.option("--site", "sites", multiple=True, help="Only this site (repeatable).")
@click.option("--dry-run", is_flag=True, help="Show what would be forgotten; delete nothing.")
@click.pass_obj
def forget(options: Options, source: str, sites: tuple[str, ...], dry_run: bool) -> None:
    """Forget and prune SOURCE's old snapshots at its sites, as its retention says.

    Only this source's snapshots from this host are considered. Append-only sites are skipped
    with the reason recorded. Exit 0 when done (or skipped) everywhere, 4 when a site failed.
    """
    config = load(options, check_environment=True)
    check_names(options, config, [source], sites)
    if config.sources[source].retention is None:
        fail(f"source {source!r} has no retention: it keeps every snapshot", Exit.CONFIG)
    rt = runtime(config)
    cancel = threading.Event()
    decided: dict[str, list[ForgetDecision]] = {}
    chosen = list(sites) or config.sources[source].sites
    doing = "looking at" if dry_run else "forgetting and pruning"
    with (
        cancel_on_signals(cancel),
        Working() as working,
        working.on(f"{doing} {source}'s snapshots at {', '.join(chosen)}"),
    ):
        runs = apply_retention(
            rt,
            source,
            list(sites) or None,
            dry_run=dry_run,
            cancel=cancel,
            on_decisions=decided.__setitem__,
        )
    for run in runs:
        if run.operation == Operation.PRUNE:
            why = f": {run.error_message}" if run.error_message else ""
            click.echo(f"{run.site}: prune {run.status}{why}")
            continue
        decisions = decided.get(run.site)
        if decisions is None:
            cause = f"{run.error_class}: " if run.error_class else ""
            click.echo(f"{run.site}: {run.status}: {cause}{run.error_message or ''}".rstrip(": "))
            continue
        removed = [decision for decision in decisions if not decision.keep]
        verb = "would forget" if dry_run else "forgot"
        click.echo(
            f"{run.site}: {verb} {plural(len(removed), 'snapshot')}, "
            f"keeps {len(decisions) - len(removed)}"
        )
        for decision in decisions:
            when = decision.snapshot.time.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
            if decision.keep:
                why = ", ".join(decision.reasons) or "kept"
                click.echo(f"  keep    {decision.snapshot.short}  {when}  {why}")
            else:
                click.echo(
                    f"  {'remove' if dry_run else 'removed'}  {decision.snapshot.short}  {when}"
                )
    if cancel.is_set():
        raise SystemExit(Exit.INTERRUPTED)
    ok = all(run.status in (Status.SUCCESS, Status.SKIPPED) for run in runs)
    raise SystemExit(Exit.OK if ok else Exit.FAILED)
