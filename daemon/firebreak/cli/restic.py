"""``firebreak restic SITE -- ARGS…``: any restic command at a site, as firebreak runs restic
there (its repository, password, environment and cache), with the terminal restic's own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import click

from firebreak.actions.runtime import prepare_restic
from firebreak.cli.common import Exit, Options, fail, load
from firebreak.config.references import UnresolvedReference
from firebreak.outcomes import ResticUnavailable
from firebreak.restic.access import resolve_site
from firebreak.restic.commands import build_env, global_args
from firebreak.restic.runner import hand_over


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("site")
@click.argument("args", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_obj
def restic(options: Options, site: str, args: tuple[str, ...]) -> None:
    """Run restic ARGS at SITE: its repository, password and environment as firebreak uses
    them, never shown or put on the command line. Put ARGS after -- when they hold --help
    (else it is firebreak's).

    \b
      firebreak restic fsn -- snapshots --tag firebreak.source=www
      firebreak restic fsn -- repair index
      firebreak restic fsn -- mount /mnt/fsn

    Exits with restic's exit code. Run it as the firebreak user: it shares the daemon's cache.
    """
    config = load(options, check_environment=True)
    if site not in config.sites:
        known = ", ".join(config.sites)
        fail(f"no site {site!r} in {options.config_path} (sites: {known})", Exit.CONFIG)
    try:
        prepare_restic(config)
        access = resolve_site(site, config.sites[site])
    except ResticUnavailable as exc:
        fail(str(exc), Exit.NOT_READY)
    except UnresolvedReference as exc:
        fail(f"sites.{site}: {exc}", Exit.CONFIG)
    env = build_env(access, os.environ)
    env.pop("RESTIC_PROGRESS_FPS", None)  # restic's own pace on a terminal
    for name in ("TERM", "COLUMNS"):  # restic draws its progress only on a terminal it knows
        if name in os.environ:
            env[name] = os.environ[name]
    handed = []
    if access.password is not None:
        try:
            handed.append(hand_over(access.password))
        except ValueError as exc:
            fail(f"sites.{site}: the password: {exc}", Exit.CONFIG)
        env["RESTIC_PASSWORD_FILE"] = f"/dev/fd/{handed[-1]}"
    argv = [config.restic.binary, *global_args(access.site, config.site_cache_dir(site)), *args]
    # restic is in the terminal's process group: Ctrl-C reaches it, and it stops as it would
    # by itself (removing its lock); firebreak only waits for it. (A handler, not SIG_IGN:
    # an ignored signal would stay ignored in restic too.) A SIGTERM is passed on to restic,
    # also one that came while it was starting.
    terms: list[int] = []
    signal.signal(signal.SIGINT, lambda *_: None)
    signal.signal(signal.SIGTERM, lambda signum, _frame: terms.append(signum))
    try:
        process = subprocess.Popen(argv, env=env, pass_fds=handed)
    except OSError as exc:
        fail(f"cannot start {config.restic.binary}: {exc.strerror or exc}", Exit.NOT_READY)
    finally:
        for fd in handed:
            os.close(fd)
    signal.signal(signal.SIGTERM, lambda *_: process.send_signal(signal.SIGTERM))
    if terms:
        process.send_signal(signal.SIGTERM)
    code = process.wait()
    sys.exit(code if code >= 0 else 128 - code)  # killed by signal N: 128 + N, as a shell says
