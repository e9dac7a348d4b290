#!/usr/bin/env bash
# `make demo`: a sample directory backed up to three demo sites (two local directories and a
# REST site served by `rclone serve restic` on 127.0.0.1) by the firebreak daemon, in the
# foreground, a cycle every minute. `--once`: one cycle and `firebreak status` instead.
# `make demo-stop` (this script with --stop) stops the REST site.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
demo=${DEMO_DIR:-/tmp/firebreak-demo}
firebreak=${FIREBREAK:-firebreak}
port=${DEMO_REST_PORT:-18765}
pidfile=$demo/rest-site.pid

stop_rest_site() {
	if [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
		kill "$(cat "$pidfile")"
		echo "stopped the demo REST site (pid $(cat "$pidfile"))"
	fi
	rm -f "$pidfile"
}

if [[ ${1:-} == --stop ]]; then
	stop_rest_site
	exit 0
fi

mkdir -p "$demo"/{data,sites,secrets}
chmod 700 "$demo/secrets"
sed "s#127.0.0.1:18765#127.0.0.1:$port#" "$here/firebreak.yaml" > "$demo/firebreak.yaml"
config=$demo/firebreak.yaml

for site in paris frankfurt london; do
	secret=$demo/secrets/$site.password
	if [[ ! -s $secret ]]; then
		(umask 077 && head -c 32 /dev/urandom | base64 > "$secret")
	fi
done

if [[ ! -e $demo/data/README.txt ]]; then
	echo "sample data for the firebreak demo" > "$demo/data/README.txt"
	for i in $(seq -w 1 40); do
		mkdir -p "$demo/data/reports/$((10#$i % 5))"
		head -c $((2048 * 10#$i)) /dev/urandom | base64 > "$demo/data/reports/$((10#$i % 5))/report-$i.txt"
	done
	head -c 4194304 /dev/urandom > "$demo/data/database.dump"
	echo "scratch" > "$demo/data/ignored.tmp"
fi
# Something changes between demo runs, as on a real server.
date -u +%FT%TZ >> "$demo/data/README.txt"

stop_rest_site
if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
	echo "port 127.0.0.1:$port is taken by another program; stop it, or run make demo-stop" >&2
	exit 1
fi
nohup rclone serve restic --addr 127.0.0.1:$port "$demo/sites/frankfurt-rest" \
	> "$demo/rest-site.log" 2>&1 &
echo $! > "$pidfile"
for _ in $(seq 50); do
	(exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
	sleep 0.1
done

echo "== firebreak validate"
"$firebreak" -c "$config" validate
echo

if [[ ${1:-} == --once ]]; then
	echo "== firebreak backup sample   (one cycle: the sample directory to all three sites at once)"
	"$firebreak" -c "$config" -v backup sample || true
	echo
	echo "== firebreak status"
	"$firebreak" -c "$config" status || true
	exit 0
fi

cat <<NEXT
== firebreak run   (the daemon, in the foreground: a cycle every minute; Ctrl-C stops it)

In another terminal, try:
  $firebreak -c $config status               # is everything safe? (from the run history)
  $firebreak -c $config placement            # where the copies are, what survives a loss
  $firebreak -c $config snapshots sample     # what each site holds (asks restic)
  open http://127.0.0.1:9188/                  # the status page (curl works too); /metrics beside it
  make demo-stop                             # the REST site goes down: watch status turn STALE
  kill -HUP \$(pgrep -f 'firebreak.*run')     # reload the config after editing $config

NEXT
trap 'stop_rest_site' EXIT
"$firebreak" -c "$config" run
