#!/bin/bash
# The ddts program's dispatch: help, version, usage errors and their exit codes.
set -u
. "$DDTS_SOURCE_DIR/tests/integration/lib.sh"

run_expect 0 "$DDTS" --help
grep -q 'Commands:' "$OUT" || fail "--help lists no commands"
run_expect 0 "$DDTS" --version
grep -Eq '^ddts [0-9]+\.[0-9]+\.[0-9]+$' "$OUT" || fail "--version prints '$(cat "$OUT")'"
run_expect 2 "$DDTS" no-such-command
grep -q "unknown command 'no-such-command'" "$ERR" || fail "unknown command not named"
run_expect 2 "$DDTS" --no-such-flag
grep -q "unknown option '--no-such-flag'" "$ERR" || fail "unknown flag not named"
run_expect 2 "$DDTS"
for cmd in server client train inspect convert evaluate predict ensemble model demo; do
    run_expect 0 "$DDTS" help "$cmd"
    grep -q "usage: ddts $cmd" "$OUT" || fail "help $cmd has no usage line"
    run_expect 0 "$DDTS" "$cmd" --help
    grep -q "usage: ddts $cmd" "$OUT" || fail "$cmd --help has no usage line"
done
run_expect 2 "$DDTS" help no-such-command
# A host name that does not fit is refused, not cut short (it would be another host).
long_host=$(printf 'h%.0s' $(seq 300))
DDTS_PASSPHRASE=secret run_expect 2 "$DDTS" client --server "$long_host:7878" --workdir "$WORK/cw"
grep -q 'host name longer than 255 bytes' "$ERR" || fail "long --server host not refused"
finish
