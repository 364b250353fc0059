# Helpers of the shell integration tests. Each test runs in its own folder.
TEST_NAME=$(basename "$0" .sh)
WORK=$(mktemp -d "/tmp/ddts-${TEST_NAME}-XXXXXX")
OUT="$WORK/stdout"
ERR="$WORK/stderr"
N_PASS=0
N_FAIL=0
PIDS=()

cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    [ "$N_FAIL" = 0 ] && [ -z "${DDTS_KEEP_WORK:-}" ] && rm -rf "$WORK"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    N_FAIL=$((N_FAIL + 1))
}

# run_expect RC CMD...: runs CMD with stdout/stderr captured, checks its exit code.
run_expect() {
    local want=$1
    shift
    "$@" >"$OUT" 2>"$ERR"
    local got=$?
    if [ "$got" != "$want" ]; then
        fail "'$*' exited $got, expected $want; stderr: $(head -c 2000 "$ERR")"
    else
        N_PASS=$((N_PASS + 1))
    fi
}

finish() {
    echo "$TEST_NAME: $N_PASS passed, $N_FAIL failed"
    [ "$N_FAIL" = 0 ]
}
