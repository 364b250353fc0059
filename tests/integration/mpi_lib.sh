# Helpers of the MPI integration tests (test_mpi_*.sh): OpenMPI settings that
# work in a container without a hostfile, as root, on a small loaded machine.
. "$DDTS_SOURCE_DIR/tests/integration/lib.sh"
PY=/usr/bin/python3
REF="$(dirname "$DDTS")/mpi_step_ref"
# mpirun refuses root unless told twice (CI runs as root).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Shared memory within the machine, and loopback; no InfiniBand probing.
# vader's single-copy mechanism (CMA) needs ptrace rights containers often
# lack: copy through the shared segment instead.
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_pml=ob1 OMPI_MCA_mtl=^ofi,psm,psm2
# More ranks than cores, no binding (ranks must not share one core by force).
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_hwloc_base_binding_policy=none
MPIRUN=(timeout 120 mpirun --oversubscribe --bind-to none)

# mk_data DIR N SEED: DIR/X/x.npy (N, 12) float32 and DIR/Y/y.npy (N,) int64 labels of 3 classes.
mk_data() {
    $PY - "$1" "$2" "$3" <<'PYEOF'
import os, sys
import numpy as np
d, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
r = np.random.default_rng(seed)
x = (r.normal(size=(n, 12)) * 3 + 1).astype(np.float32)
y = np.argmax(x @ r.normal(size=(12, 3)), 1).astype(np.int64)
os.makedirs(d + "/X", exist_ok=True)
os.makedirs(d + "/Y", exist_ok=True)
np.save(d + "/X/x.npy", x)
np.save(d + "/Y/y.npy", y)
PYEOF
}

# mk_model PATH: a small dense classifier (12 -> 16 tanh -> 3 softmax), no dropout.
mk_model() {
    cat >"$WORK/small.json" <<'JSON'
{"class_name": "Sequential", "config": {"name": "small", "layers": [
 {"class_name": "InputLayer", "config": {"batch_input_shape": [null, 12], "dtype": "float32", "name": "input_1"}},
 {"class_name": "Dense", "config": {"name": "dense", "units": 16, "activation": "tanh", "use_bias": true}},
 {"class_name": "Dense", "config": {"name": "out", "units": 3, "activation": "softmax", "use_bias": true}}]}}
JSON
    "$DDTS" model new "$WORK/small.json" -o "$1" >/dev/null || fail "ddts model new"
}

# json_get FILE KEY: a value of a JSON object file.
json_get() {
    $PY -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}
