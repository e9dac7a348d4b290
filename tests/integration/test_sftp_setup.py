"""An SFTP site set up as docs/install.md says for the service user: its own key and
known_hosts under /etc/firebreak/ssh, the host key pinned from ssh-keyscan; and what happens
when the server's key is not the pinned one."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.support.cli import firebreak
from tests.support.servers import SftpServer
from tests.support.setup import Setup


def _ssh_dir(setup: Setup, server: SftpServer) -> Path:
    """What install.md has the sysadmin write: a key, a config, a pinned known_hosts."""
    ssh = setup.dir / "etc-firebreak-ssh"
    ssh.mkdir(mode=0o700)
    shutil.copy(server.client_key, ssh / "id_ed25519")
    (ssh / "id_ed25519").chmod(0o600)
    (ssh / "config").write_text(
        "Host fsn-backup\n"
        "    HostName 127.0.0.1\n"
        f"    Port {server.port}\n"
        f"    User {server.user}\n"
        f"    IdentityFile {ssh / 'id_ed25519'}\n"
        "    IdentitiesOnly yes\n"
        "    BatchMode yes\n"
        "    HostKeyAlias fsn-backup\n"
        f"    UserKnownHostsFile {ssh / 'known_hosts'}\n"
        "    StrictHostKeyChecking yes\n"
    )
    # Pinned as install.md says: ssh-keyscan, the name replaced by the alias, the fingerprint
    # compared with the server's own (ssh-keygen -lf on the server).
    scanned = subprocess.run(
        ["ssh-keyscan", "-p", str(server.port), "-t", "ed25519", "127.0.0.1"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.split()
    (ssh / "known_hosts").write_text(f"fsn-backup {scanned[1]} {scanned[2]}\n")
    fingerprint = subprocess.run(
        ["ssh-keygen", "-lf", str(ssh / "known_hosts")], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    server_side = subprocess.run(
        ["ssh-keygen", "-lf", f"{server.host_key}.pub"], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    assert fingerprint == server_side
    return ssh


def test_an_sftp_site_with_a_pinned_host_key_and_one_whose_key_changed(
    setup: Setup, sftp_server: SftpServer
) -> None:
    ssh = _ssh_dir(setup, sftp_server)
    command = f"ssh -F {ssh / 'config'} fsn-backup -s sftp"
    setup.site(
        "fsn",
        f"sftp:fsn-backup:{sftp_server.base_dir / setup.dir.name}",
        options={"sftp.command": command},
    )
    setup.source("www", ["fsn"])
    config = setup.write()
    done = firebreak(config, "backup", "www")
    assert done.returncode == 0, done.stdout + done.stderr

    # The server's key is not the pinned one any more (a reinstalled server, or someone in
    # the middle): nothing is sent to it. (ssh says "Host key verification failed", which
    # firebreak reads as AccessDenied, not retried (tests/unit/restic/test_errors.py); but restic forwards ssh's stderr from a
    # goroutine of its own and may exit first, and then only "unable to start the sftp
    # session" is left, which reads as SiteUnreachable. Either way the run fails.)
    other = setup.dir / "other_host_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True, timeout=30
    )
    kind, key = Path(f"{other}.pub").read_text().split()[:2]
    (ssh / "known_hosts").write_text(f"fsn-backup {kind} {key}\n")
    before = sorted(p.name for p in (sftp_server.base_dir / setup.dir.name / "snapshots").iterdir())
    refused = firebreak(config, "backup", "www")
    assert refused.returncode == 4, refused.stdout + refused.stderr
    [run] = [r for r in setup.runs() if r.operation == "backup" and r.status == "failed"]
    assert "unable to start the sftp session" in (run.error_message or ""), run.error_message
    after = sorted(p.name for p in (sftp_server.base_dir / setup.dir.name / "snapshots").iterdir())
    assert after == before
