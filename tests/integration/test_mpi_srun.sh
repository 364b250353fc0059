#!/bin/bash
# ddts train --distributed mpi under Slurm: `srun --mpi=pmix -n 2` gives the
# weights `mpirun -np 2` gives, bit for bit. Uses the Slurm cluster this
# machine belongs to when `srun` works here; else, as root with Slurm
# installed (Debian slurm-wlm), starts a private one-node cluster in the
# test's folder (munged on its own socket and key, slurmctld and slurmd on
# free ports; docs/mpi.md, "Slurm"); else it is skipped, saying why.
set -u
. "$DDTS_SOURCE_DIR/tests/integration/mpi_lib.sh"

if ! command -v srun >/dev/null 2>&1; then
    echo "SKIPPED: Slurm is not installed (srun not found; Debian: apt-get install slurm-wlm)"
    exit 0
fi

# start_private_slurm: munged, slurmctld, slurmd for this machine alone; 0 when srun works.
start_private_slurm() {
    local s="$WORK/slurm" host cpus p1 p2
    mkdir -p "$s/state" "$s/spool" || return 1
    host=$(hostname -s)
    cpus=$(nproc)
    p1=$(free_port)
    p2=$(free_port)
    [ "$p1" != "$p2" ] || p2=$((p1 + 1))
    head -c 1024 /dev/urandom >"$s/munge.key" && chmod 600 "$s/munge.key"
    /usr/sbin/munged --force --socket="$s/munge.sock" --key-file="$s/munge.key" \
        --log-file="$s/munged.log" --pid-file="$s/munged.pid" --seed-file="$s/munged.seed" ||
        return 1
    PIDS+=("$(cat "$s/munged.pid")")
    cat >"$s/slurm.conf" <<CONF
ClusterName=ddtstest
SlurmctldHost=$host
SlurmctldPort=$p1
SlurmdPort=$p2
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$s/munge.sock
SlurmUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
StateSaveLocation=$s/state
SlurmdSpoolDir=$s/spool
SlurmctldPidFile=$s/slurmctld.pid
SlurmdPidFile=$s/slurmd.pid
SlurmctldLogFile=$s/slurmctld.log
SlurmdLogFile=$s/slurmd.log
NodeName=$host CPUs=$cpus State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
    export SLURM_CONF="$s/slurm.conf"
    /usr/sbin/slurmctld -i || return 1
    sleep 1
    PIDS+=("$(cat "$s/slurmctld.pid" 2>/dev/null)")
    /usr/sbin/slurmd || return 1
    sleep 1
    PIDS+=("$(cat "$s/slurmd.pid" 2>/dev/null)")
    for _ in $(seq 1 10); do
        timeout 5 srun -n 1 true >/dev/null 2>&1 && return 0
        sleep 1
    done
    return 1
}

if timeout 20 srun -n 2 true >/dev/null 2>&1; then
    echo "using this machine's Slurm cluster"
elif [ "$(id -u)" = 0 ] && [ -x /usr/sbin/slurmctld ] && [ -x /usr/sbin/slurmd ] &&
    [ -x /usr/sbin/munged ]; then
    if ! start_private_slurm; then
        echo "SKIPPED: a private Slurm cluster did not start here:"
        tail -n 5 "$WORK"/slurm/*.log 2>/dev/null
        exit 0
    fi
    echo "using a private one-node Slurm cluster ($SLURM_CONF)"
else
    echo "SKIPPED: srun finds no Slurm cluster, and a private one needs root and slurmctld, slurmd, munged (Debian slurm-wlm)"
    exit 0
fi

mk_data "$WORK/data" 96 1
mk_model "$WORK/small.h5"
COMMON=(--model "$WORK/small.h5" --data server --dataset "$WORK/data" --epochs 2 --batch-size 8
    --threads 1 --seed 7 --normalizer zscore --validation-split 0 --optimizer adam
    --learning-rate 0.05 --loss sparse_categorical_crossentropy --sync step)

# Debian's OpenMPI (4.1) talks to Slurm through PMIx only: --mpi=pmix.
run_expect 0 timeout 120 srun --mpi=pmix -n 2 "$DDTS" train --distributed mpi "${COMMON[@]}" \
    --out "$WORK/srun"
grep -q "^ranks: 2$" "$OUT" || fail "srun: no 'ranks: 2' in $(cat "$OUT" "$ERR")"
run_expect 0 "${MPIRUN[@]}" -np 2 "$DDTS" train --distributed mpi "${COMMON[@]}" \
    --out "$WORK/mpirun"
for f in checkpoint.bin history.csv; do
    if cmp "$WORK/srun/$f" "$WORK/mpirun/$f"; then
        N_PASS=$((N_PASS + 1))
        echo "srun -n 2: $f is mpirun -np 2's, bit for bit"
    else
        fail "srun -n 2: $f differs from mpirun -np 2's"
    fi
done
finish
