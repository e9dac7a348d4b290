"""``${ENV_VAR}``, ``file:`` and ``credential:`` references: how secrets are named in the YAML
without being in it.

``credential:NAME`` is a systemd credential (``LoadCredential=NAME`` in the unit): the file
NAME in ``$CREDENTIALS_DIRECTORY``. Where systemd did not start firebreak (a command run by
hand), the same name is looked up where ``LoadCredential=NAME`` itself finds it: systemd's
credential stores (/etc/credstore, /run/credstore, /usr/local/lib/credstore, /usr/lib/credstore).

A reference is kept as written in the config model and resolved only when a restic process is
about to start, so a secret's value never sits in the model, a log line or an error message.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
ENV_ONLY = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
FILE_PREFIX = "file:"
CREDENTIAL_PREFIX = "credential:"
# What systemd accepts as a credential name that is also a plain file name.
CREDENTIAL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@+-]*$")
CREDENTIAL_STORES = tuple(
    Path(store)
    for store in (
        "/etc/credstore",
        "/run/credstore",
        "/usr/local/lib/credstore",
        "/usr/lib/credstore",
    )
)


class UnresolvedReference(ValueError):
    """A reference that cannot be resolved; the message never contains a secret."""


def is_file_reference(text: str) -> bool:
    """A ``file:`` or ``credential:`` reference: a file holds the value."""
    return text.startswith((FILE_PREFIX, CREDENTIAL_PREFIX))


def is_credential_reference(text: str) -> bool:
    return text.startswith(CREDENTIAL_PREFIX)


def file_reference_path(
    text: str, base_dir: Path, environ: Mapping[str, str] | None = None
) -> Path:
    """The file a ``file:`` or ``credential:`` reference names (see credential_path)."""
    if is_credential_reference(text):
        return credential_path(text[len(CREDENTIAL_PREFIX) :], environ)
    path = Path(text[len(FILE_PREFIX) :]).expanduser()
    return path if path.is_absolute() else base_dir / path


def credential_path(name: str, environ: Mapping[str, str] | None = None) -> Path:
    """Where the credential NAME is: in ``$CREDENTIALS_DIRECTORY`` when systemd set it,
    else in the first credential store that has it (else the first store, so that an error
    names a path)."""
    if not CREDENTIAL_NAME.fullmatch(name):
        raise UnresolvedReference(f"{name!r} is not a credential name")
    env = os.environ if environ is None else environ
    directory = env.get("CREDENTIALS_DIRECTORY")
    if directory:
        return Path(directory) / name
    for store in CREDENTIAL_STORES:
        try:
            (store / name).stat()
        except OSError:  # missing, or in a store this user may not look into
            continue
        return store / name
    return CREDENTIAL_STORES[0] / name


def credential_problem(text: str, environ: Mapping[str, str] | None = None) -> str | None:
    """Why a credential reference cannot be read here, said so that the fix is plain."""
    name = text[len(CREDENTIAL_PREFIX) :]
    try:
        path = credential_path(name, environ)
    except UnresolvedReference as exc:
        return str(exc)
    env = os.environ if environ is None else environ
    if env.get("CREDENTIALS_DIRECTORY") or env.get("INVOCATION_ID"):  # started by systemd
        if env.get("CREDENTIALS_DIRECTORY") and path.exists():
            return file_problem(path)
        return (
            f"credential {name} is not loaded: the unit needs LoadCredential={name}, and "
            f"the file {CREDENTIAL_STORES[0] / name} (systemd skips a missing one silently)"
        )
    why = file_problem(path)
    if why is None:
        return None
    stores = " or ".join(str(store) for store in CREDENTIAL_STORES)
    return (
        f"credential {name}: not started by systemd with LoadCredential={name}, and {why} "
        f"(looked in {stores}; they are root's: run this through systemd-run, docs/install.md)"
    )


def interpolate(text: str, environ: Mapping[str, str] | None = None) -> str:
    """Replace every ``${VAR}`` in text; a variable that is not set is an error naming it."""
    env = os.environ if environ is None else environ

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise UnresolvedReference(f"environment variable {name} is not set")
        return env[name]

    return ENV_REFERENCE.sub(substitute, text)


def missing_variables(text: str, environ: Mapping[str, str] | None = None) -> list[str]:
    env = os.environ if environ is None else environ
    return [name for name in ENV_REFERENCE.findall(text) if name not in env]


def resolve(text: str, base_dir: Path, environ: Mapping[str, str] | None = None) -> str:
    """The value a reference stands for: a file's content (one trailing newline dropped),
    an interpolated ``${VAR}`` string, or the literal text."""
    if is_file_reference(text):
        why = credential_problem(text, environ) if is_credential_reference(text) else None
        if why is not None:
            raise UnresolvedReference(why)
        path = file_reference_path(text, base_dir, environ)
        try:
            content = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UnresolvedReference(f"cannot read {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise UnresolvedReference(f"{path} is not UTF-8 text") from None
        if "\0" in content:
            raise UnresolvedReference(f"{path} contains a NUL byte")
        return content[:-1] if content.endswith("\n") else content
    return interpolate(text, environ)


def check_reference(text: str, base_dir: Path) -> str | None:
    """Why a reference cannot be resolved now, or None when it can."""
    if is_credential_reference(text):
        return credential_problem(text) or _content_problem(file_reference_path(text, base_dir))
    if is_file_reference(text):
        path = file_reference_path(text, base_dir)
        return file_problem(path) or _content_problem(path)
    missing = missing_variables(text)
    if missing:
        return f"environment variable {', '.join(missing)} is not set"
    return None


def file_problem(path: Path) -> str | None:
    """Why a file the config names cannot be read now, or None."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return f"file {path} does not exist"
    except OSError as exc:  # a directory on the way this user may not enter, a loop
        return f"file {path} cannot be read: {exc.strerror or exc}"
    if stat.S_ISDIR(mode):
        return f"file {path} is a directory, not a file"
    if not stat.S_ISREG(mode):
        return f"file {path} is not a regular file"
    if not os.access(path, os.R_OK):
        return f"file {path} is not readable"
    return None


def _content_problem(path: Path) -> str | None:
    """A value read from a file goes into restic's environment: it must be text."""
    try:
        resolve(f"{FILE_PREFIX}{path}", path.parent)
    except UnresolvedReference as exc:
        return str(exc)
    return None


# Who besides the owner may read a site's secret files.
SecretReaders = Literal["owner", "group", "unchecked"]
_TOO_OPEN = {"owner": stat.S_IRGRP | stat.S_IROTH, "group": stat.S_IROTH, "unchecked": 0}


def permission_problem(path: Path, readers: SecretReaders) -> str | None:
    """Why a secret file is too open (ssh's rule for keys), or None."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None  # file_problem says why
    loose = mode & _TOO_OPEN[readers]
    if not loose:
        return None
    who = "everyone" if loose & stat.S_IROTH else "its group"
    fix = "chmod 600" if readers == "owner" else "chmod 640"
    return (
        f"file {path} is readable by {who} (mode {stat.S_IMODE(mode):04o}): {fix} it, or say "
        "who may read it with secret_file_readers"
    )
