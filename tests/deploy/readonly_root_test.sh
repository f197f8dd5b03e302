#!/usr/bin/env bash
# The image runs with readOnlyRootFilesystem: the webhook and the enroll tool may write only to
# the database volume and /tmp. This test makes that true for real, without a container: in a
# private mount namespace (unshare -m, needs root) it remounts / read-only, mounts a tmpfs as the
# "volume" (/srv) and another as /tmp, then starts the real twostep-webhook on loopback (port 0),
# enrols a user with twostep-enroll next to it (as `kubectl exec` would), and has the webhook
# answer /readyz and decide a review (which writes the audit log). A negative control shows that a
# database outside the volume indeed cannot be written there.
# Usage: readonly_root_test.sh WEBHOOK ENROLL FIXTURES_DIR SOURCE_DIR
set -euo pipefail

webhook=$(readlink -f "${1:?twostep-webhook}")
enroll=$(readlink -f "${2:?twostep-enroll}")
fixtures=$(readlink -f "${3:?fixtures dir}")
src=$(readlink -f "${4:?source dir}")

if [[ $(id -u) -ne 0 ]]; then
  echo "FAIL: this test needs root (unshare -m, mount); CI and our machines run as root"
  exit 1
fi
for tool in unshare mount curl openssl; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool is not installed"; exit 1; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The Secrets' contents: a serving certificate (by our own generate.sh) and a master key.
sh "$src/deploy/certs/generate.sh" --no-apply --dir "$work/certs" --patch "$work/cabundle.yaml" \
  >/dev/null
(umask 077 && openssl rand -base64 32 >"$work/master.key")
cp "$fixtures/0001-CREATE-deployments-demo-denied.json" "$work/review.json"

cat >"$work/inner.sh" <<'EOF'
set -uo pipefail
work=$1 webhook=$2 enroll=$3
passes=0 failures=0
check() { local what=$1; shift; if "$@"; then passes=$((passes + 1)); else echo "FAIL: $what"; failures=$((failures + 1)); fi; }

mount --make-rprivate / && mount --bind / / && mount -o remount,bind,ro / ||
  { echo "FAIL: cannot remount / read-only in a private mount namespace"; exit 1; }
check "/ is read-only now" bash -c '! touch /.twostep-rofs-probe 2>/dev/null'
mount -t tmpfs -o mode=0755,size=64m twostep-volume /srv
mkdir -p /srv/etc/tls
cp "$work/certs/tls.crt" "$work/certs/tls.key" /srv/etc/tls/
cp "$work/master.key" /srv/etc/master.key && chmod 0600 /srv/etc/master.key
# The binaries may live under /tmp (a CI clone), which the next mount hides: run copies, as the
# image runs its own from /usr/local/bin.
mkdir -p /srv/etc/bin && cp "$webhook" "$enroll" /srv/etc/bin/
webhook=/srv/etc/bin/$(basename "$webhook") enroll=/srv/etc/bin/$(basename "$enroll")
cp "$work/review.json" /srv/review.json
mount -t tmpfs -o mode=1777,size=64m twostep-tmp /tmp   # hides the host's /tmp from here on

flags=(--tls-cert=/srv/etc/tls/tls.crt --tls-key=/srv/etc/tls/tls.key
       --master-key-file=/srv/etc/master.key --log-format=json)

# Negative control: a database on the read-only root cannot be created.
check "a database outside the volume fails on a read-only root" \
  bash -c '! timeout 10 "$0" --listen=127.0.0.1:0 --db=/var/tmp/twostep-rofs.db "${@}" >/srv/neg.log 2>&1' \
  "$webhook" "${flags[@]}"
echo "negative control said: $(head -c 300 /srv/neg.log)"

"$webhook" --listen=127.0.0.1:0 --db=/srv/twostep.db "${flags[@]}" >/srv/webhook.log 2>&1 &
pid=$!
port=""
for _ in $(seq 100); do
  port=$(grep -o '"address":"127.0.0.1:[0-9]*"' /srv/webhook.log 2>/dev/null | head -n1 | grep -o '[0-9]*"$' | tr -d '"')
  [[ -n $port ]] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if ! check "the webhook starts on a read-only root and listens" test -n "$port"; then
  cat /srv/webhook.log; kill "$pid" 2>/dev/null; exit 1
fi
check "/readyz answers 200 (database usable, certificate loaded)" \
  test "$(curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:$port/readyz")" = 200
check "twostep-enroll adds a user next to the running webhook" \
  "$enroll" --db /srv/twostep.db --master-key-file /srv/etc/master.key add alice --active --no-qr >/srv/enroll.log 2>&1
answer=$(curl -sk -H 'Content-Type: application/json' --data-binary @/srv/review.json \
  "https://127.0.0.1:$port/validate")
check "a review without a code is decided (denied), got: ${answer:0:200}" \
  grep -q '"allowed":false' <<<"$answer"
check "the decision was recorded in the audit log on the volume" \
  grep -q "alice" <("$enroll" --db /srv/twostep.db --master-key-file /srv/etc/master.key audit 2>&1)
kill -TERM "$pid"
wait "$pid"; status=$?
check "the webhook stops cleanly on SIGTERM (exit $status)" test "$status" -eq 0
check "no read-only file system error in the log" bash -c '! grep -qi "read-only" /srv/webhook.log'
written=$(find /srv -newer /srv/review.json -type f | sort | tr '\n' ' ')
echo "files written on the volume: $written"
echo "readonly-root: $passes passed, $failures failed"
(( failures == 0 ))
EOF

unshare -m bash "$work/inner.sh" "$work" "$webhook" "$enroll"
