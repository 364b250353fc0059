#!/bin/bash
# Job settings without a terminal: flags, a job file (flags override it),
# errors naming the flag, and the help text agreeing with the settings table.
# Driven through `ddts wizard`, which checks the settings and writes a job file
# (the same code path `ddts server` and `ddts train` use: cli/job_flags.c).
set -u
. "$DDTS_SOURCE_DIR/tests/integration/lib.sh"
cd "$WORK" || exit 1

# The help text (cli/job_help.h) lists exactly the settings of the table.
run_expect 0 "$DDTS" wizard --list-settings
cp "$OUT" settings.txt
run_expect 0 "$DDTS" wizard --help
grep -F -x -f settings.txt "$OUT" >in_help.txt
cmp -s settings.txt in_help.txt || fail "ddts wizard --help disagrees with the settings table: $(diff settings.txt in_help.txt)"
[ "$(wc -l <settings.txt)" -ge 30 ] || fail "only $(wc -l <settings.txt) settings listed"

# Flags only: the job file holds what was given, the command line is printed.
run_expect 0 "$DDTS" wizard --model m.h5 --clients 3 --data=keras --keras-dataset mnist \
    --epochs 5 --normalizer 3 --method 1 --sync steps:4 --collect=no --job-out a.json </dev/null
grep -q -- 'ddts server --model m.h5 --clients 3 --epochs 5 --normalizer zscore --method kfold --data keras --keras-dataset mnist --sync steps:4' "$ERR" ||
    fail "command line not printed: $(cat "$ERR")"
/usr/bin/python3 - a.json <<'PY' || fail "a.json content"
import json, sys
j = json.load(open(sys.argv[1]))
want = {"model": "m.h5", "clients": 3, "epochs": 5, "normalizer": "zscore", "method": "kfold",
        "data": "keras", "keras-dataset": "mnist", "sync": "steps:4", "collect": False}
bad = {k: (j.get(k), v) for k, v in want.items() if j.get(k) != v}
assert not bad, bad
PY

# A job file, then flags that override it (wherever --job appears).
cat >job.json <<'J'
{"model": "a.keras", "clients": 2, "data": 3, "keras_dataset": "fashion_mnist",
 "epochs": 4, "batch-size": 64, "validation-split": 0.2}
J
run_expect 0 "$DDTS" wizard --epochs 9 --job job.json --batch-size 16 --job-out b.json </dev/null
/usr/bin/python3 - b.json <<'PY' || fail "b.json content"
import json, sys
j = json.load(open(sys.argv[1]))
want = {"model": "a.keras", "clients": 2, "epochs": 9, "batch-size": 16, "data": "keras",
        "keras-dataset": "fashion_mnist", "validation-split": 0.2}
bad = {k: (j.get(k), v) for k, v in want.items() if j.get(k) != v}
assert not bad, bad
PY
# The written job file reads back to the same file.
run_expect 0 "$DDTS" wizard --job b.json --job-out c.json </dev/null
cmp -s b.json c.json || fail "job file does not round-trip: $(diff b.json c.json)"

# Errors name the flag, exit 2, and write nothing.
run_expect 2 "$DDTS" wizard --model m.h5 --job-out x.json </dev/null
grep -q -- '--clients is required' "$ERR" || fail "missing --clients not named: $(cat "$ERR")"
run_expect 2 "$DDTS" wizard --model m.h5 --clients 2 --job-out x.json </dev/null
grep -q -- '--dataset is required with --data server' "$ERR" || fail "missing --dataset not named"
[ ! -e x.json ] || fail "a job file was written despite the error"
run_expect 2 "$DDTS" wizard --epochs ten </dev/null
grep -q -- "--epochs: 'ten' is not an integer" "$ERR" || fail "bad --epochs not explained"
run_expect 2 "$DDTS" wizard --normalizer 7 </dev/null
grep -q -- "--normalizer: '7' is not none, simple, minmax or zscore" "$ERR" || fail "bad --normalizer"
run_expect 2 "$DDTS" wizard --no-such-flag 3 </dev/null
grep -q -- "unknown option '--no-such-flag'" "$ERR" || fail "unknown flag not named: $(cat "$ERR")"
run_expect 2 "$DDTS" wizard --passphrase hunter2 </dev/null
grep -q -- "--passphrase: a secret never goes on the command line" "$ERR" || fail "--passphrase accepted"
run_expect 2 "$DDTS" wizard --epochs </dev/null
grep -q -- "--epochs: a value is required" "$ERR" || fail "missing value not explained"
echo '{"epochs": 3, "epoch": 4}' >typo.json
run_expect 2 "$DDTS" wizard --job typo.json </dev/null
grep -q 'typo.json: unknown setting "epoch"' "$ERR" || fail "unknown job-file key not named: $(cat "$ERR")"
echo '{"epochs": 3,' >broken.json
run_expect 2 "$DDTS" wizard --job broken.json </dev/null
grep -q 'broken.json: line' "$ERR" || fail "broken job file not located: $(cat "$ERR")"
run_expect 2 "$DDTS" wizard --job missing.json </dev/null
grep -q 'missing.json' "$ERR" || fail "missing job file not named"
# --model FOLDER: its one model file, or an error listing several.
mkdir -p models && : >models/only.h5
run_expect 0 "$DDTS" wizard --model models --clients 2 --data keras --keras-dataset mnist --job-out f.json </dev/null
grep -q '"model": "models/only.h5"' f.json || fail "folder with one model not resolved: $(cat f.json)"
: >models/other.keras
run_expect 2 "$DDTS" wizard --model models --clients 2 --data keras --keras-dataset mnist --job-out f.json </dev/null
grep -q -- "--model models holds 2 models (models/only.h5, models/other.keras)" "$ERR" || fail "several models not listed: $(cat "$ERR")"

# A passphrase file that ddts server would refuse (unreadable, empty, readable
# by every user) is refused, with the server's messages.
OK_FLAGS="--model m.h5 --clients 2 --data keras --keras-dataset mnist --job-out p.json"
run_expect 1 "$DDTS" wizard $OK_FLAGS --passphrase-file nowhere </dev/null
grep -q -- "nowhere: cannot open passphrase file" "$ERR" || fail "unreadable passphrase file: $(cat "$ERR")"
: >empty-pass
chmod 600 empty-pass
run_expect 1 "$DDTS" wizard $OK_FLAGS --passphrase-file empty-pass </dev/null
grep -q -- "empty-pass: passphrase is empty" "$ERR" || fail "empty passphrase file: $(cat "$ERR")"
echo 'a fine passphrase' >pass
chmod 644 pass
run_expect 1 "$DDTS" wizard $OK_FLAGS --passphrase-file pass </dev/null
grep -q -- "pass: passphrase file is readable by every user" "$ERR" || fail "world-readable passphrase file: $(cat "$ERR")"
chmod 600 pass
run_expect 0 "$DDTS" wizard $OK_FLAGS --passphrase-file pass </dev/null
grep -q '"passphrase-file": "pass"' p.json || fail "passphrase file path not in the job file"
grep -q 'a fine passphrase' p.json && fail "the passphrase itself is in the job file"
finish
