#!/bin/bash
# Build a Debian 12 guest for the real-systemd tests, once (tests/systemd/conftest.py calls it
# and keeps the result outside the repository):   build-guest.sh CACHE_DIR
# CACHE_DIR gets: rootfs/ (the debootstrapped tree), vmlinuz, initrd.img, rootfs.ext4 (the
# disk, never written after this), ssh/ (the throwaway key root@guest accepts, and the guest's
# pinned host key) and wheelhouse/ (firebreak's dependencies: the guest has no PyPI).
# Each step leaves a marker in CACHE_DIR/.done and is skipped next time; a step that runs
# redoes every later one. About 2 minutes the first time (debootstrap is most of it).
set -euo pipefail
CACHE=${1:?usage: build-guest.sh CACHE_DIR}
mkdir -p "$CACHE/.done"
CACHE=$(cd "$CACHE" && pwd)
ROOT=$CACHE/rootfs
SRC=$(cd "$(dirname "$0")/../.." && pwd)
PIP=${PIP:-$SRC/.venv/bin/pip}
SUITE=bookworm
# The machine's own Debian mirror (the only registry this may use).
MIRROR=${MIRROR:-$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
PACKAGES=systemd-sysv,udev,linux-image-amd64,dbus,iproute2,python3,python3-venv,restic,util-linux,openssh-server,ca-certificates
# The host's pip settings (find-links, indexes) must not leak into the chroot.
CHROOT="env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 chroot"
REDO=0

step() {  # step NAME: run the function NAME once
    if [ "$REDO" = 0 ] && [ -e "$CACHE/.done/$1" ]; then return; fi
    REDO=1
    local began=$SECONDS
    echo "guest image: $1"
    "$1"
    echo "$((SECONDS - began)) s" > "$CACHE/.done/$1"
}

debootstrap_root() {
    rm -rf "$ROOT" "$ROOT.tmp"
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOT.tmp" "$MIRROR" \
        > "$CACHE/debootstrap.log" 2>&1 || { tail -30 "$CACHE/debootstrap.log"; exit 1; }
    mv "$ROOT.tmp" "$ROOT"
}

configure_root() {
    echo fbguest > "$ROOT/etc/hostname"
    printf '127.0.0.1 localhost\n127.0.1.1 fbguest\n' > "$ROOT/etc/hosts"
    echo '/dev/vda / ext4 rw,noatime 0 1' > "$ROOT/etc/fstab"
    # install.md starts with apt-get update/install: the guest has no network to a mirror, so
    # make apt fail at once (a refused proxy, no retries); the packages are already there.
    printf 'deb %s %s main\n' "$MIRROR" "$SUITE" > "$ROOT/etc/apt/sources.list"
    printf 'Acquire::http::Proxy "http://127.0.0.1:9/";\nAcquire::Retries "0";\n' \
        > "$ROOT/etc/apt/apt.conf.d/99offline"
    # No DNS in the guest: a refused local resolver fails at once.
    rm -f "$ROOT/etc/resolv.conf"; echo 'nameserver 127.0.0.1' > "$ROOT/etc/resolv.conf"
    cat > "$ROOT/etc/systemd/network/10-eth.network" <<'EOF'
[Match]
Name=en* eth*
[Network]
DHCP=ipv4
EOF
    chroot "$ROOT" systemctl enable systemd-networkd.service >/dev/null 2>&1
    # A login prompt on the serial console swallows output; timers must not wake up when a
    # restored guest's clock jumps forward.
    chroot "$ROOT" systemctl mask serial-getty@ttyS0.service getty@tty1.service >/dev/null 2>&1
    for unit in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer \
        fstrim.timer man-db.timer logrotate.timer systemd-tmpfiles-clean.timer e2scrub_reap.service; do
        chroot "$ROOT" systemctl mask "$unit" >/dev/null 2>&1 || true
    done
    mkdir -p "$ROOT/etc/systemd/system/systemd-networkd-wait-online.service.d"
    printf '[Service]\nExecStart=\nExecStart=/lib/systemd/systemd-networkd-wait-online --any --timeout=20\n' \
        > "$ROOT/etc/systemd/system/systemd-networkd-wait-online.service.d/any.conf"
    mkdir -p "$ROOT/etc/systemd/journald.conf.d"
    printf '[Journal]\nStorage=volatile\nRateLimitBurst=0\n' > "$ROOT/etc/systemd/journald.conf.d/test.conf"
    # root over ssh, with a throwaway key only.
    rm -rf "$CACHE/ssh"; mkdir -p "$CACHE/ssh"
    ssh-keygen -q -t ed25519 -N '' -C firebreak-test -f "$CACHE/ssh/id_ed25519"
    install -d -m 0700 "$ROOT/root/.ssh"
    install -m 0600 "$CACHE/ssh/id_ed25519.pub" "$ROOT/root/.ssh/authorized_keys"
    printf 'PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUseDNS no\nGSSAPIAuthentication no\nPrintMotd no\n' \
        > "$ROOT/etc/ssh/sshd_config.d/test.conf"
    printf '[127.0.0.1]:* %s\n' "$(cut -d' ' -f1,2 "$ROOT/etc/ssh/ssh_host_ed25519_key.pub")" \
        > "$CACHE/ssh/known_hosts"
    # pip offline, from the wheelhouse: install.md's `pip install /usr/local/src/firebreak`
    # then works as written.
    printf '[global]\nno-index = true\nfind-links = /opt/wheelhouse\ndisable-pip-version-check = true\n' \
        > "$ROOT/etc/pip.conf"
    $CHROOT "$ROOT" apt-get clean
    $CHROOT "$ROOT" apt-cache gencaches >/dev/null
}

wheelhouse() {
    # firebreak's dependencies (and the postgresql extra, and the build backend) as wheels for
    # the guest's CPython 3.11, at the versions this checkout's venv has.
    local wheels=$CACHE/wheelhouse
    rm -rf "$wheels" "$wheels.tmp"; mkdir -p "$wheels.tmp"
    python3 - "$SRC/pyproject.toml" > "$wheels.tmp/requirements.txt" <<'EOF'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))
for line in (project["project"]["dependencies"]
             + project["project"]["optional-dependencies"]["postgresql"]
             + project["build-system"]["requires"]):
    print(line)
EOF
    "$PIP" freeze 2>/dev/null | grep -v -e '^-e' -e '@' -e '^firebreak' > "$wheels.tmp/constraints.txt" || true
    "$PIP" download -q --disable-pip-version-check --dest "$wheels.tmp" --only-binary=:all: \
        --implementation cp --python-version 3.11 --abi cp311 --abi abi3 --abi none \
        --platform manylinux_2_36_x86_64 --platform manylinux_2_28_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform manylinux1_x86_64 --platform any \
        -r "$wheels.tmp/requirements.txt" -c "$wheels.tmp/constraints.txt"
    mv "$wheels.tmp" "$wheels"
    rm -rf "$ROOT/opt/wheelhouse"; cp -a "$wheels" "$ROOT/opt/wheelhouse"
}

prewarm() {
    # The dependencies go into /opt/firebreak now, at native speed: under qemu's emulation
    # pip takes a minute for them. The test still runs install.md's venv and pip commands,
    # which then add firebreak itself (built without an isolated environment: pip's config
    # spells that "no-build-isolation = no").
    rm -rf "$ROOT/opt/firebreak" "$ROOT/etc/xdg/pip"
    $CHROOT "$ROOT" /usr/bin/python3 -m venv /opt/firebreak
    $CHROOT "$ROOT" /opt/firebreak/bin/pip install -q -r /opt/wheelhouse/requirements.txt
    mkdir -p "$ROOT/etc/xdg/pip"
    printf '[global]\nno-build-isolation = no\n' > "$ROOT/etc/xdg/pip/pip.conf"
}

kernel() {
    cp "$(ls "$ROOT"/boot/vmlinuz-* | sort -V | tail -1)" "$CACHE/vmlinuz"
    cp "$(ls "$ROOT"/boot/initrd.img-* | sort -V | tail -1)" "$CACHE/initrd.img"
    chmod 0644 "$CACHE/vmlinuz" "$CACHE/initrd.img"
}

ext4_image() {
    rm -f "$CACHE/rootfs.ext4" "$CACHE/rootfs.ext4.tmp" "$CACHE"/*.qcow2 "$CACHE"/*.state
    truncate -s 3G "$CACHE/rootfs.ext4.tmp"
    mkfs.ext4 -q -F -L root -d "$ROOT" "$CACHE/rootfs.ext4.tmp"
    mv "$CACHE/rootfs.ext4.tmp" "$CACHE/rootfs.ext4"
}

step debootstrap_root
step configure_root
step wheelhouse
step prewarm
step kernel
step ext4_image
