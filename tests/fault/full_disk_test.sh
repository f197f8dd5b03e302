#!/usr/bin/env bash
# A full disk under the database (a 4 MiB tmpfs, filled up): writes fail, so codes are refused
# (fail closed) and nothing is allowed that was not recorded; the server stays up, and accepts
# codes again once space is freed. Runs in a private mount namespace (unshare -m, as root), so the
# tmpfs disappears with the test whatever happens.
if [[ -z ${TWOSTEP_FAULT_NS:-} ]]; then
  exec unshare --mount --propagation private env TWOSTEP_FAULT_NS=1 bash "$0" "$@"
fi
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

mkdir -p "$work/disk"
mount -t tmpfs -o size=4m,mode=0700 twostep-fault "$work/disk" || fail "cannot mount a tmpfs"
cleanup_hooks+=("umount -l '$work/disk'")
make_db "$work/disk/db" 200
start_server

# send USER CODE: prints "allowed reason" of a /validate answer ("http STATUS" otherwise).
send() {
  review "$1" "$2" >"$work/review.json"
  local answer
  answer=$(post /validate "$work/review.json")
  if [[ $answer != 200\ * ]]; then echo "http ${answer%% *}"; return; fi
  sed -n 's/.*"allowed":\([a-z]*\).*"reason":"\([a-z_]*\)".*/\1 \2/p' <<<"$answer"
}

[[ $(send bench-user-000000 "$(code_of bench-user-000000)") == "true verified" ]] ||
  fail "no code accepted before the disk filled up"
dd if=/dev/zero of="$work/disk/filler" bs=64k 2>/dev/null || true  # stops at ENOSPC
note "disk full: $(df -k "$work/disk" | awk 'NR == 2 {print $4}') KiB left"

# Every user a valid code: each needs a write. Count what was allowed, and check that each allowed
# code really left its step in the database.
allowed=0 refused=0
for i in $(seq 1 30); do
  user=$(printf 'bench-user-%06d' "$i")
  result=$(send "$user" "$(code_of "$user")")
  case $result in
    "true verified") allowed=$((allowed + 1)); echo "$user" >>"$work/allowed" ;;
    "false internal_error") refused=$((refused + 1)) ;;
    *) fail "$user on a full disk: $result" ;;
  esac
done
note "on the full disk: $refused valid codes refused (internal_error), $allowed allowed"
(( refused > 0 )) || fail "no write failed on a full disk"
server_alive || fail "the webhook died on a full disk"
grep -qi 'full' "$work/server.log" || fail "the log does not say the disk is full"

rm -f "$work/disk/filler"
user=bench-user-000100
[[ $(send $user "$(code_of $user)") == "true verified" ]] || fail "no recovery after freeing space"
if [[ -s $work/allowed ]]; then
  names=$(sed "s/.*/'&'/" "$work/allowed" | paste -sd,)
  stepped=$(sqlite3 "$db" "SELECT COUNT(*) FROM users WHERE last_step IS NOT NULL AND username IN ($names)")
  [[ $stepped == "$allowed" ]] || fail "$allowed codes allowed on the full disk, $stepped recorded"
fi
[[ $(sqlite3 "$db" 'PRAGMA integrity_check') == ok ]] || fail "integrity_check after the full disk"
stop_server
note "ok: refused while full, recovered when space came back"
