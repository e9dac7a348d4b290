#!/usr/bin/env bash
# Other restic releases for the tests, without touching the system: the restic packages of
# Debian trixie and sid, downloaded through a private apt configuration and unpacked (restic is
# one static binary) into CACHE/VERSION/usr/bin/restic. The system's apt sources, lists and
# packages stay as they were. Run again, it downloads only what is missing.
# Usage: restic-versions.sh CACHE [SUITE...]   (suites default: trixie sid)
set -euo pipefail

cache=${1:?usage: restic-versions.sh CACHE [SUITE...]}
shift
if [ $# -eq 0 ]; then set -- trixie sid; fi
suites=("$@")
apt_dir=$cache/apt
mkdir -p "$apt_dir/sources" "$apt_dir/state/lists/partial" "$apt_dir/cache/archives/partial"

# The machine's own Debian mirror: deb822 sources first, then the one-line format.
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
if [ -z "$mirror" ]; then
	mirror=$(awk '$1 == "deb" && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}
printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
	"$mirror" "${suites[*]}" >"$apt_dir/sources/extra.sources"
apt_options=(
	-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$apt_dir/sources"
	-o "Dir::State=$apt_dir/state" -o "Dir::Cache=$apt_dir/cache" -o Debug::NoLocking=1
	-o APT::Sandbox::User=root
)

# The lists are refreshed once a day at most: a clean clone's first make test fetches them.
stamp=$apt_dir/state/updated
if [ -z "$(find "$stamp" -mmin -1440 2>/dev/null)" ]; then
	apt-get "${apt_options[@]}" -q update >/dev/null
	touch "$stamp"
fi

for suite in "${suites[@]}"; do
	# awk reads to the end: an early exit would kill apt-cache with SIGPIPE (pipefail).
	version=$(apt-cache "${apt_options[@]}" madison restic | awk -v s="$suite" '$0 ~ s"/main" && !n++ {print $3}')
	if [ -z "$version" ]; then
		echo "restic-versions: Debian $suite has no restic package" >&2
		exit 1
	fi
	upstream=${version%%-*}
	upstream=${upstream#*:}
	if [ -x "$cache/$upstream/usr/bin/restic" ]; then
		continue
	fi
	(cd "$apt_dir" && apt-get "${apt_options[@]}" -q download "restic=$version" >/dev/null)
	deb=$(ls "$apt_dir"/restic_"${version#*:}"_*.deb)
	rm -rf "$cache/$upstream.partial"
	dpkg -x "$deb" "$cache/$upstream.partial"
	mv "$cache/$upstream.partial" "$cache/$upstream"
	rm -f "$deb"
	echo "restic-versions: restic $upstream (Debian $suite) in $cache/$upstream"
done

# The real rest-server (Debian's restic-rest-server), for the append-only tests: unpacked into
# CACHE/rest-server/usr/bin/restic-rest-server, like restic.
if [ ! -x "$cache/rest-server/usr/bin/restic-rest-server" ]; then
	version=$(apt-cache "${apt_options[@]}" madison restic-rest-server | awk '!n++ {print $3}')
	if [ -z "$version" ]; then
		echo "restic-versions: Debian ${suites[*]} has no restic-rest-server package" >&2
		exit 1
	fi
	(cd "$apt_dir" && apt-get "${apt_options[@]}" -q download "restic-rest-server=$version" >/dev/null)
	deb=$(ls "$apt_dir"/restic-rest-server_"${version#*:}"_*.deb)
	rm -rf "$cache/rest-server.partial"
	dpkg -x "$deb" "$cache/rest-server.partial"
	mv "$cache/rest-server.partial" "$cache/rest-server"
	rm -f "$deb"
	echo "restic-versions: rest-server $version in $cache/rest-server"
fi
