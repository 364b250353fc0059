#!/bin/bash
# The library calls no banned function (sprintf, strcpy, atoi, rand, exit, printf, ...).
set -u
. "$DDTS_SOURCE_DIR/tests/integration/lib.sh"
run_expect 0 sh "$DDTS_SOURCE_DIR/scripts/banned.sh"
finish
