"""Resolving a site's references (``${VAR}``, ``file:``, ``credential:``) just before restic
starts.

This is the only place secrets are read; the values go into a SiteAccess that is handed to
the runner and dropped after the run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from firebreak.config.model import Site
from firebreak.config.references import ENV_REFERENCE, interpolate, resolve
from firebreak.restic.commands import SiteAccess

_SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASS|TOKEN|KEY|CREDENTIAL", re.IGNORECASE)


def resolve_site(name: str, site: Site, *, environ: Mapping[str, str] | None = None) -> SiteAccess:
    """Raises config.references.UnresolvedReference naming what is missing (never a value)."""
    env_source = os.environ if environ is None else environ
    secrets: list[str] = []
    repository = interpolate(site.repository, env_source)
    secrets += [env_source[var] for var in ENV_REFERENCE.findall(site.repository)]
    password = None
    if site.password is not None:
        password = resolve(site.password, Path("/"), env_source)
        secrets.append(password)
    env: dict[str, str] = {}
    for key, text in site.env.items():
        value = resolve(text, Path("/"), env_source)
        env[key] = value
        if text != value or _SECRET_NAME.search(key):
            secrets.append(value)
    return SiteAccess(
        name=name,
        site=site,
        repository=repository,
        password=password,
        env=env,
        secrets=tuple(s for s in secrets if s),
    )
