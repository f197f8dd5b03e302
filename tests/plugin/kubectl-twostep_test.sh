#!/bin/sh
# Tests the kubectl plugin with a fake kubectl on PATH that records each call's arguments and
# standard input. The prompt test runs the plugin on a real pseudo-terminal (util-linux script).
# Usage: kubectl-twostep_test.sh PATH/TO/kubectl-twostep
set -u

plugin=${1:?usage: $0 PATH/TO/kubectl-twostep}
plugin=$(cd "$(dirname "$plugin")" && pwd)/$(basename "$plugin")
work=$(mktemp -d "${TMPDIR:-/tmp}/kubectl-twostep-test.XXXXXX")
trap 'rm -rf "$work"' EXIT
passed=0
failed=0

mkdir -p "$work/bin" "$work/log"
cat >"$work/bin/kubectl" <<'EOF'
#!/bin/sh
# Fake kubectl: logs argv (one argument per line) and, where kubectl would read it, stdin.
n=$(($(ls "$FAKE_LOG" | grep -c '\.args$') + 1))
printf '%s\n' "$@" >"$FAKE_LOG/$n.args"
reads_stdin=0
prev=""
for a in "$@"; do
    if [ "$a" = "-" ] && { [ "$prev" = "-f" ] || [ "$prev" = "--filename" ]; }; then reads_stdin=1; fi
    prev=$a
done
if [ "$reads_stdin" = 1 ]; then cat >"$FAKE_LOG/$n.stdin"; fi
case $1 in
    annotate)
        # Echo the objects with a marker carrying the last argument (the annotation).
        printf '# annotated: %s\n' "$(eval "printf '%s' \"\${$#}\"")"
        prev=""
        for a in "$@"; do
            if [ "$prev" = "-f" ]; then
                if [ "$a" = "-" ]; then cat "$FAKE_LOG/$n.stdin"; else cat "$a"; fi
            fi
            prev=$a
        done
        exit "${FAKE_ANNOTATE_RC:-0}" ;;
    create)
        if [ -n "${FAKE_DENY:-}" ]; then
            echo 'Error from server: admission webhook "twostep.dev" denied the request: wrong two-step code for user alice (1 of 5 before a lockout); check that your device'"'"'s clock is right' >&2
            exit 1
        fi
        if [ -z "${FAKE_NO_WARNING:-}" ]; then
            echo 'Warning: twostep grant open until 2030-01-01T00:10:00Z' >&2
        fi
        printf 'apiVersion: authorization.k8s.io/v1\nkind: SelfSubjectAccessReview\nstatus:\n  allowed: false\n' ;;
    *)
        echo "fake: $1 done" ;;
esac
exit "${FAKE_RC:-0}"
EOF
chmod +x "$work/bin/kubectl"
PATH="$work/bin:$PATH"
export PATH
FAKE_LOG="$work/log"
export FAKE_LOG
unset TWOSTEP_CODE TWOSTEP_ANNOTATION

printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n' >"$work/cm.yaml"
mkdir -p "$work/dir"
cp "$work/cm.yaml" "$work/dir/a.yaml"

reset_log() { rm -f "$FAKE_LOG"/*; }
calls() { ls "$FAKE_LOG" | grep -c '\.args$'; }
args_of() { tr '\n' ' ' <"$FAKE_LOG/$1.args" | sed 's/ $//'; }

check() {  # check NAME CONDITION-RESULT(0/1) DETAIL
    if [ "$2" -eq 0 ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        printf 'FAILED: %s\n  %s\n' "$1" "$3" >&2
    fi
}

expect_eq() {  # expect_eq NAME ACTUAL EXPECTED
    [ "$2" = "$3" ]
    check "$1" $? "expected [$3], got [$2]"
}

expect_contains() {  # expect_contains NAME TEXT NEEDLE
    case $2 in *"$3"*) r=0 ;; *) r=1 ;; esac
    check "$1" $r "expected to contain [$3]: [$2]"
}

expect_not_contains() {
    case $2 in *"$3"*) r=1 ;; *) r=0 ;; esac
    check "$1" $r "expected not to contain [$3]: [$2]"
}

run() {  # run ARGS...: sets rc, out, err (stdin from /dev/null unless redirected by caller)
    "$plugin" "$@" >"$work/out" 2>"$work/err"
    rc=$?
    out=$(cat "$work/out")
    err=$(cat "$work/err")
}

# --- apply, create, replace -------------------------------------------------------------------
reset_log
run apply -f "$work/cm.yaml" --code 123456 -n demo --server-side </dev/null
expect_eq "apply exits 0" "$rc" 0
expect_eq "apply makes two kubectl calls" "$(calls)" 2
expect_eq "apply annotates locally with the code" "$(args_of 1)" \
    "annotate --local --overwrite -f $work/cm.yaml -o yaml twostep.dev/token=123456"
expect_eq "apply pipes into apply -f - with the other arguments" "$(args_of 2)" \
    "apply -f - -n demo --server-side"
expect_contains "apply sends the annotated objects" "$(cat "$FAKE_LOG/2.stdin")" \
    "# annotated: twostep.dev/token=123456"
expect_contains "apply sends the file's objects" "$(cat "$FAKE_LOG/2.stdin")" "name: cm"
expect_contains "apply prints kubectl's output" "$out" "fake: apply done"
expect_not_contains "apply never prints the code" "$out$err" "123456"

for verb in create replace; do
    reset_log
    run "$verb" --filename="$work/cm.yaml" --code=87654321 </dev/null
    expect_eq "$verb exits 0" "$rc" 0
    expect_eq "$verb annotates with --filename=" "$(args_of 1)" \
        "annotate --local --overwrite --filename=$work/cm.yaml -o yaml twostep.dev/token=87654321"
    expect_eq "$verb sends to kubectl $verb" "$(args_of 2)" "$verb -f -"
done

reset_log
run apply -R -f "$work/dir" --code 123456 --prune -l app=web </dev/null
expect_eq "a directory and -R go to annotate" "$(args_of 1)" \
    "annotate --local --overwrite -R -f $work/dir -o yaml twostep.dev/token=123456"
expect_eq "other flags go to apply" "$(args_of 2)" "apply -f - --prune -l app=web"

# Several objects share one code: the plugin says how to avoid replay denials.
printf 'apiVersion: v1\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n- apiVersion: v1\n  kind: Secret\nkind: List\n' >"$work/list.yaml"
reset_log
run apply -f "$work/list.yaml" --code 123456 </dev/null
expect_eq "a list of objects is still applied" "$rc" 0
expect_contains "a list of objects gets a note about the one-time code" "$err" \
    "note: 2 objects share one code, which works once"
reset_log
run apply -f "$work/cm.yaml" --code 123456 </dev/null
expect_not_contains "one object gets no note" "$err" "note:"

reset_log
TWOSTEP_CODE=246810 TWOSTEP_ANNOTATION=example.com/otp run apply -f "$work/cm.yaml" </dev/null
expect_eq "TWOSTEP_CODE and TWOSTEP_ANNOTATION are used" "$(args_of 1)" \
    "annotate --local --overwrite -f $work/cm.yaml -o yaml example.com/otp=246810"
reset_log
run apply -f "$work/cm.yaml" --code 123456 --annotation other.io/code </dev/null
expect_eq "--annotation renames the annotation" "$(args_of 1)" \
    "annotate --local --overwrite -f $work/cm.yaml -o yaml other.io/code=123456"
reset_log
run apply -f "$work/cm.yaml" --code abcd-efgh-jkmn-pqrs </dev/null
expect_eq "a recovery code is accepted" "$rc" 0
expect_contains "the recovery code goes into the annotation" "$(args_of 1)" \
    "twostep.dev/token=abcd-efgh-jkmn-pqrs"

reset_log
run apply -f - --code 123456 <"$work/cm.yaml"
expect_eq "apply -f - exits 0" "$rc" 0
expect_eq "apply -f - annotates stdin" "$(args_of 1)" \
    "annotate --local --overwrite -f - -o yaml twostep.dev/token=123456"
expect_contains "the manifest from stdin reaches annotate" "$(cat "$FAKE_LOG/1.stdin")" "kind: ConfigMap"
expect_contains "and then apply" "$(cat "$FAKE_LOG/2.stdin")" "kind: ConfigMap"

# Not a terminal: the code is the first line of standard input.
reset_log
printf '654321\n' | { "$plugin" apply -f "$work/cm.yaml" >"$work/out" 2>"$work/err"; echo $? >"$work/rc"; }
expect_eq "a code piped on stdin is used" "$(cat "$work/rc")" 0
expect_contains "the piped code reaches annotate" "$(args_of 1)" "twostep.dev/token=654321"
expect_not_contains "no prompt without a terminal" "$(cat "$work/err")" "twostep code:"

reset_log
FAKE_ANNOTATE_RC=1 run apply -f "$work/cm.yaml" --code 123456 </dev/null
expect_eq "a failed annotate fails the command" "$rc" 1
expect_eq "and nothing is applied" "$(calls)" 1
expect_contains "a failed annotate is explained" "$err" "kubectl annotate failed"

# --- bad input: exit 2, kubectl apply never runs ----------------------------------------------
bad() {  # bad NAME EXPECTED-MESSAGE ARGS...
    name=$1
    message=$2
    shift 2
    reset_log
    run "$@" </dev/null
    expect_eq "$name exits 2" "$rc" 2
    expect_contains "$name says why" "$err" "$message"
    expect_eq "$name calls no kubectl" "$(calls)" 0
}
bad "a non-digit code" "the code must be the 6 or 8 digits" apply -f "$work/cm.yaml" --code 12ab56
bad "a short code" "the code must be the 6 or 8 digits" apply -f "$work/cm.yaml" --code 12345
bad "a code with shell characters" "the code must be" apply -f "$work/cm.yaml" --code '1234;rm'
bad "no code at all" "the code is empty" apply -f "$work/cm.yaml"
bad "apply without -f" "apply needs the objects to annotate: -f FILE, -f DIR or -f -" apply --code 123456
bad "patch" "patch is not wrapped" patch deploy web -p '{}'
bad "an unknown command" "unknown command 'frob'" frob
bad "a bad duration" "--for takes a duration like 90s, 10m or 1h, not '10d'" unlock --for 10d --code 123456
bad "--for on apply" "--for is for unlock, delete and exec" apply -f "$work/cm.yaml" --for 1m --code 123456
bad "--code without a value" "--code needs a value" apply -f "$work/cm.yaml" --code
bad "a bad annotation" "--annotation must be an annotation name" apply -f "$work/cm.yaml" --code 123456 --annotation 'a b'

# -f - without --code and without any terminal: nothing to ask on.
reset_log
setsid -w sh -c '"$1" apply -f - <"$2" >"$3/out" 2>"$3/err"; echo $? >"$3/rc"' sh "$plugin" "$work/cm.yaml" "$work"
expect_eq "-f - without a code or terminal exits 2" "$(cat "$work/rc")" 2
expect_contains "-f - without a code says what to do" "$(cat "$work/err")" "give --code CODE or set TWOSTEP_CODE"
expect_eq "-f - without a code calls no kubectl" "$(calls)" 0

run </dev/null
expect_eq "no arguments exit 2" "$rc" 2
expect_contains "no arguments print usage" "$err" "usage: kubectl twostep"
run --help
expect_eq "--help exits 0" "$rc" 0
expect_contains "--help documents unlock" "$out" "kubectl twostep unlock [--for DURATION]"

# --- unlock, delete, exec ---------------------------------------------------------------------
reset_log
run unlock --for 10m --code 123456 </dev/null
expect_eq "unlock exits 0" "$rc" 0
expect_eq "unlock creates a review" "$(args_of 1)" "create --validate=false -f - -o yaml"
review=$(cat "$FAKE_LOG/1.stdin")
expect_contains "the review is a SelfSubjectAccessReview" "$review" "kind: SelfSubjectAccessReview"
expect_contains "the review asks for 10 minutes" "$review" 'path: "/twostep.dev/unlock/10m"'
expect_contains "the review carries the code in verb" "$review" 'verb: "123456"'
expect_eq "unlock prints the grant's end from the webhook" "$out" \
    "unlocked: twostep grant open until 2030-01-01T00:10:00Z"

reset_log
run unlock --code 123456 </dev/null
expect_contains "no --for asks for no duration" "$(cat "$FAKE_LOG/1.stdin")" 'path: "/twostep.dev/unlock"'

reset_log
FAKE_NO_WARNING=1 run unlock --for 90s --code 123456 </dev/null
expect_eq "unlock without the webhook's warning exits 1" "$rc" 1
expect_eq "it claims no grant" "$out" ""
expect_contains "and says twostep did not confirm" "$err" \
    "unlock not confirmed: twostep did not answer the review, so no grant is open"

reset_log
FAKE_NO_WARNING=1 run delete deploy web --code 123456 </dev/null
expect_eq "delete after an unconfirmed unlock exits 1" "$rc" 1
expect_eq "and deletes nothing" "$(calls)" 1

reset_log
FAKE_DENY=1 run unlock --code 123456 </dev/null
expect_eq "a denied unlock exits 1" "$rc" 1
expect_contains "a denied unlock shows the webhook's message" "$err" "wrong two-step code for user alice"
expect_contains "a denied unlock says so" "$err" "unlock refused"

# kubectl refuses its flags before a plugin's name, so they come after it; the unlock must go to
# the same cluster as the same user as the command it unlocks.
reset_log
run unlock --code 123456 --kubeconfig /k/bob.kubeconfig --context=c1 --insecure-skip-tls-verify </dev/null
expect_eq "unlock takes kubectl's connection flags" "$rc" 0
expect_eq "unlock sends the review with them" "$(args_of 1)" \
    "create --validate=false --kubeconfig /k/bob.kubeconfig --context=c1 --insecure-skip-tls-verify -f - -o yaml"
reset_log
run unlock --code 123456 -n demo </dev/null
expect_eq "unlock refuses other arguments" "$rc" 2
expect_contains "and says which it takes" "$err" "unlock takes no other arguments than kubectl's connection flags"
expect_eq "and calls nothing" "$(calls)" 0
reset_log
run delete deploy web -n demo --as=bob --code 123456 --kubeconfig k </dev/null
expect_eq "delete unlocks as the user it deletes as" "$(args_of 1)" \
    "create --validate=false --as=bob --kubeconfig k -f - -o yaml"
expect_eq "delete keeps the connection flags" "$(args_of 2)" "delete deploy web -n demo --as=bob --kubeconfig k"
reset_log
run exec web-0 --code 123456 --context c2 -- sh -c 'echo --kubeconfig x' </dev/null
expect_eq "exec unlocks in its context" "$(args_of 1)" "create --validate=false --context c2 -f - -o yaml"
expect_eq "flags after -- stay the command's" "$(cat "$FAKE_LOG/2.args")" \
    "$(printf 'exec\nweb-0\n--context\nc2\n--\nsh\n-c\necho --kubeconfig x')"

reset_log
run delete deploy web -n demo --code 123456 </dev/null
expect_eq "delete exits 0" "$rc" 0
expect_eq "delete unlocks first" "$(args_of 1)" "create --validate=false -f - -o yaml"
expect_eq "then deletes" "$(args_of 2)" "delete deploy web -n demo"

reset_log
FAKE_DENY=1 run delete deploy web --code 123456 </dev/null
expect_eq "delete after a denied unlock exits 1" "$rc" 1
expect_eq "and deletes nothing" "$(calls)" 1

reset_log
run delete --no-unlock -f "$work/cm.yaml" </dev/null
expect_eq "delete --no-unlock runs only delete" "$(args_of 1)" "delete -f $work/cm.yaml"
expect_eq "delete --no-unlock makes one call" "$(calls)" 1

reset_log
run exec -it web-0 --for 5m --code 123456 -- sh -c 'echo --code 1 "a b"' </dev/null
expect_contains "exec unlocks for 5m" "$(cat "$FAKE_LOG/1.stdin")" 'path: "/twostep.dev/unlock/5m"'
expect_eq "exec passes everything after -- untouched" "$(cat "$FAKE_LOG/2.args")" \
    "exec
-it
web-0
--
sh
-c
echo --code 1 \"a b\""

# --- the prompt on a real terminal: no echo, and the echo comes back ---------------------------
if command -v script >/dev/null 2>&1; then
    reset_log
    mkfifo "$work/keys"
    # script gives the plugin a pty; the code is typed only once the prompt is on screen, so it
    # would be echoed if (and only if) the plugin had not turned echo off.
    script -qfec "$plugin apply -f $work/cm.yaml; stty -a | grep -o -- '-*echo ' | head -n 1" \
        "$work/typescript" <"$work/keys" >/dev/null 2>&1 &
    pid=$!
    exec 4>"$work/keys"
    i=0
    while ! grep -q "twostep code:" "$work/typescript" 2>/dev/null && [ $i -lt 100 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    printf '975310\n' >&4
    exec 4>&-
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    screen=$(cat "$work/typescript")
    expect_contains "the prompt is shown on the terminal" "$screen" "twostep code:"
    expect_not_contains "the typed code is not echoed" "$screen" "975310"
    expect_contains "the typed code is used" "$(args_of 1)" "twostep.dev/token=975310"
    expect_contains "the terminal's echo is restored" "$screen" "echo "
    expect_not_contains "the terminal's echo is not left off" "$screen" "-echo "
else
    check "util-linux script is installed (for the pty test)" 1 "script not found"
fi

if command -v shellcheck >/dev/null 2>&1; then
    shellcheck -s sh "$plugin" >"$work/sc" 2>&1
    check "the plugin is shellcheck-clean" $? "$(cat "$work/sc")"
fi

printf '%s passed, %s failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
