#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL server: initialises a cluster in a temp dir, starts it
# on a free loopback port (and a unix socket in the same temp dir), runs the command with
# TWOSTEP_TEST_POSTGRES_URL set, then stops the server and removes the cluster, whatever happens.
# Installs nothing (scripts/install-deps.sh test lists postgresql).
#
# Usage: scripts/with-postgres.sh COMMAND [ARGS...]
# The command also gets TWOSTEP_TEST_POSTGRES_CTL, a script taking start|stop|restart, for fault
# tests that restart the server under load, and TWOSTEP_TEST_POSTGRES_CA, the CA certificate of the
# server's TLS certificate (for localhost and 127.0.0.1). Exits with the command's status.
#
# The cluster requires a password (scram-sha-256, random per run) even on loopback, so the tests
# see URLs with a password in them, as production does. initdb refuses to run as root: as root the
# cluster belongs to the `postgres` system user that Debian's postgresql package creates.
set -euo pipefail

if (($# == 0)); then
  echo "usage: $0 COMMAND [ARGS...]" >&2
  exit 2
fi

pg_version=${TWOSTEP_PG_VERSION:-15}
bindir=/usr/lib/postgresql/$pg_version/bin
for tool in initdb pg_ctl; do
  if [[ ! -x $bindir/$tool ]]; then
    echo "with-postgres: $bindir/$tool not found; install postgresql (scripts/install-deps.sh test)" >&2
    exit 1
  fi
done

# As root, run the server as `postgres`; otherwise as the caller.
as_owner=()
if (($(id -u) == 0)); then
  if ! id postgres >/dev/null 2>&1; then
    echo "with-postgres: running as root but there is no 'postgres' user to own the cluster" >&2
    exit 1
  fi
  as_owner=(runuser -u postgres --)
fi

workdir=$(mktemp -d "${TMPDIR:-/tmp}/twostep-pg.XXXXXX")
data=$workdir/data
log=$workdir/server.log

# shellcheck disable=SC2317 # called from the EXIT trap
stop_server() {
  if [[ -f $data/postmaster.pid ]]; then
    "${as_owner[@]}" "$bindir/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
}
# shellcheck disable=SC2317 # the EXIT trap
cleanup() {
  stop_server
  rm -rf "$workdir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The server's user must reach its data dir and socket; the temp dir holds nothing else.
if ((${#as_owner[@]})); then
  chown postgres: "$workdir"
fi
chmod 0700 "$workdir"

user=twostep
password=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
printf '%s\n' "$password" >"$workdir/pwfile"
if ((${#as_owner[@]})); then
  chown postgres: "$workdir/pwfile"
fi
chmod 0600 "$workdir/pwfile"

if ! "${as_owner[@]}" "$bindir/initdb" -D "$data" -U "$user" --pwfile="$workdir/pwfile" \
  --auth=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 --no-instructions >"$workdir/initdb.log" 2>&1; then
  echo "with-postgres: initdb failed:" >&2
  cat "$workdir/initdb.log" >&2
  exit 1
fi
rm -f "$workdir/pwfile"

# TLS with a throwaway CA, so tests can check that the URL's sslmode reaches libpq (require,
# verify-full against TWOSTEP_TEST_POSTGRES_CA). Plain connections stay allowed.
tls=$workdir/tls
mkdir "$tls"
if ! {
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=twostep test postgres CA" \
    -keyout "$tls/ca.key" -out "$tls/ca.crt" &&
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
      -keyout "$data/server.key" -out "$tls/server.csr" &&
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$tls/ext" &&
    openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" \
      -CAcreateserial -days 2 -extfile "$tls/ext" -out "$data/server.crt"
} >"$tls/openssl.log" 2>&1; then
  echo "with-postgres: cannot create the test certificates:" >&2
  cat "$tls/openssl.log" >&2
  exit 1
fi
chmod 0600 "$data/server.key"
if ((${#as_owner[@]})); then
  chown postgres: "$data/server.key" "$data/server.crt"
fi
chmod 0755 "$tls"

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A free port can be taken between probing and binding: retry a few times.
started=0
for _ in 1 2 3 4 5; do
  port=$(free_port)
  # Settings live in postgresql.conf so that `restart` keeps them. fsync is off: the cluster is
  # thrown away, and a clean restart (the fault test) still loses nothing.
  cat >"$data/postgresql.auto.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$workdir'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
EOF
  if ((${#as_owner[@]})); then
    chown postgres: "$data/postgresql.auto.conf"
  fi
  if "${as_owner[@]}" "$bindir/pg_ctl" -D "$data" -l "$log" -w -t 30 start >/dev/null 2>&1; then
    started=1
    break
  fi
done
if ((!started)); then
  echo "with-postgres: the server did not start; its log:" >&2
  cat "$log" >&2 || true
  exit 1
fi

# For fault tests: stop, start or restart this server (fast shutdown, waits until done).
ctl=$workdir/pg_ctl.sh
cat >"$ctl" <<EOF
#!/bin/sh
case "\${1:-}" in
  start|stop|restart) ;;
  *) echo "usage: \$0 start|stop|restart" >&2; exit 2 ;;
esac
exec ${as_owner[*]} "$bindir/pg_ctl" -D "$data" -l "$log" -m fast -w -t 30 "\$1"
EOF
chmod 0755 "$ctl"

export TWOSTEP_TEST_POSTGRES_URL="postgresql://$user:$password@127.0.0.1:$port/postgres"
export TWOSTEP_TEST_POSTGRES_CTL=$ctl
export TWOSTEP_TEST_POSTGRES_CA=$tls/ca.crt
echo "with-postgres: PostgreSQL $pg_version on 127.0.0.1:$port (cluster in $workdir)" >&2

# In the background, so that a SIGTERM or SIGINT (a CI timeout, ^C) reaches this script at once
# (bash defers traps while a foreground child runs): the command is then stopped first and the
# server and cluster removed by the EXIT trap. (The command's stdin is therefore /dev/null.)
"$@" &
child=$!
# shellcheck disable=SC2317 # called from the INT and TERM traps
forward() {
  kill -"$1" "$child" 2>/dev/null || true
  wait "$child" 2>/dev/null || true
  exit "$2"
}
trap 'forward INT 130' INT
trap 'forward TERM 143' TERM
status=0
wait "$child" || status=$?
exit "$status"
