#!/bin/sh
# Fails if library code calls a banned function (see docs/architecture.md).
set -u
cd "$(dirname "$0")/.."
pattern='\<(sprintf|vsprintf|strcpy|strcat|gets|atoi|atol|atof|rand|srand|exit|abort|printf|puts|system|alloca)\s*\('
if grep -nE "$pattern" src/*/*.c src/*/*.h 2>/dev/null | grep -vE '^\S+:\s*/?\*'; then
    echo "banned calls found in src/ (see above)" >&2
    exit 1
fi
echo "banned.sh: no banned calls in src/"
