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

# free_port: a TCP port on 127.0.0.1 that was free a moment ago.
free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_server PID ERRFILE: waits (up to 2 min) until the server PID says in
# ERRFILE that it listens ("waiting for N clients"; it checks the model and
# loads and splits the data first); a failure when it exits or never does.
wait_server() {
    for _ in $(seq 1 600); do
        grep -q 'waiting for' "$2" 2>/dev/null && return 0
        kill -0 "$1" 2>/dev/null || break
        sleep 0.2
    done
    fail "the server did not start: $(head -c 2000 "$2")"
    return 1
}

finish() {
    echo "$TEST_NAME: $N_PASS passed, $N_FAIL failed"
    [ "$N_FAIL" = 0 ]
}
