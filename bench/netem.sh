#!/bin/bash
# Time per exchange over emulated links (issue 17, "a scaling model"): two
# network namespaces joined by a veth pair, shaped with tc netem (rate 1 and
# 10 Gbit/s, one-way delay 0.1 and 50 ms on each end), and in them
#   * the MPI path: mpirun with rank 0 in namespace A and rank 1 in B
#     (bench_mpi: gradient and weight allreduce per model size, TCP BTL);
#   * the server path: a ddts server in A, two clients in B (bench_sync
#     --serve/--join: one weight-averaging round per model size).
# Model sizes 0.2 MB (the MLP) ... 25 MB. Byte counts are exact; timings on a
# loaded machine are marked as such and are not final figures.
#
#   bench/netem.sh [BUILD_DIR]     (root; ip and tc; NETEM_SIZES, NETEM_REPEATS)
#
# Only the two namespaces it creates are touched, with addresses
# 192.168.254.1 and .2 that exist only inside them; both are deleted on exit.
# Without the sch_netem kernel module (some VM kernels) rate is shaped with tbf
# and the delay is not emulated: the lines say so.
set -u
B=${1:-build}
SIZES=${NETEM_SIZES:-0.2 1 5 25}
R=${NETEM_REPEATS:-5}
[ "$(id -u)" = 0 ] || { echo "netem.sh: needs root (network namespaces)" >&2; exit 2; }
for t in ip tc mpirun "$B/bench_mpi" "$B/bench_sync"; do
    command -v "$t" >/dev/null 2>&1 || { echo "netem.sh: $t missing (make bench builds bench_*)" >&2; exit 2; }
done
S=$$
NA=ddts-a$S NB=ddts-b$S VA=dva$S VB=dvb$S
cleanup() { ip netns del "$NA" 2>/dev/null; ip netns del "$NB" 2>/dev/null; }
trap cleanup EXIT INT TERM
ip netns add "$NA" && ip netns add "$NB" || exit 1
ip link add "$VA" type veth peer name "$VB" || exit 1
ip link set "$VA" netns "$NA" && ip link set "$VB" netns "$NB" || exit 1
ip netns exec "$NA" ip addr add 192.168.254.1/24 dev "$VA"
ip netns exec "$NB" ip addr add 192.168.254.2/24 dev "$VB"
for ns in "$NA" "$NB"; do ip netns exec "$ns" ip link set lo up; done
ip netns exec "$NA" ip link set "$VA" up
ip netns exec "$NB" ip link set "$VB" up

NETEM=1
ip netns exec "$NA" tc qdisc add dev "$VA" root netem delay 1ms 2>/dev/null || NETEM=0
ip netns exec "$NA" tc qdisc del dev "$VA" root 2>/dev/null
# shape RATE DELAY: the same shaping on both ends (each direction of the link).
shape() {
    for pair in "$NA:$VA" "$NB:$VB"; do
        ns=${pair%%:*} dev=${pair#*:}
        if [ $NETEM = 1 ]; then
            # limit: packets queued, above the bandwidth-delay product of 10 Gbit/s x 50 ms.
            ip netns exec "$ns" tc qdisc replace dev "$dev" root netem rate "$1" delay "$2" limit 100000
        else
            # burst: about one timer tick of the rate (1 ms), so that bursts stay small.
            burst=256kb
            [ "$1" = 10gbit ] && burst=2mb
            ip netns exec "$ns" tc qdisc replace dev "$dev" root tbf rate "$1" burst $burst latency 1s
        fi
    done
}

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=self,tcp OMPI_MCA_btl_tcp_if_include=192.168.254.0/24 OMPI_MCA_pml=ob1
# Rank 1 (in B) reaches mpirun's PMIx server (in A) over the veth link.
export PMIX_MCA_ptl_tcp_remote_connections=1 PMIX_MCA_ptl_tcp_if_include=192.168.254.0/24
export PMIX_MCA_ptl_tcp_disable_ipv6_family=1
LIST=$(echo $SIZES | tr ' ' ',')
LOAD=$(uptime | sed 's/.*load average: //')
echo "netem.sh on $(uname -n), $(nproc) cores, load $LOAD (timings on a loaded machine are not final)"
[ $NETEM = 1 ] || echo "sch_netem is not available in this kernel: rate shaped with tbf, delay NOT emulated"
PORT=47000
DELAYS="0.1ms 50ms"
[ $NETEM = 1 ] || DELAYS=none
for rate in 1gbit 10gbit; do
    for delay in $DELAYS; do
        shape $rate $delay
        tag="$rate, delay $delay each way"
        [ $NETEM = 1 ] || tag="$rate (tbf), delay not emulated"
        timeout 600 ip netns exec "$NA" mpirun --oversubscribe --bind-to none \
            -np 1 "$B/bench_mpi" --sizes "$LIST" --repeats "$R" : \
            -np 1 ip netns exec "$NB" "$B/bench_mpi" --sizes "$LIST" --repeats "$R" 2>&1 |
            sed "s/^/[$tag] /"
        for mb in $SIZES; do
            fl=$(awk -v m="$mb" 'BEGIN{printf "%d", m * 1e6 / 4}')
            PORT=$((PORT + 1))
            ip netns exec "$NA" timeout 600 "$B/bench_sync" 2 "$R" "$fl" --serve 192.168.254.1:$PORT >/dev/null 2>&1 &
            sp=$!
            sleep 0.5
            ip netns exec "$NB" timeout 600 "$B/bench_sync" 2 "$R" "$fl" --join 192.168.254.1:$PORT 2>&1 |
                sed "s/^/[$tag] server path, 2 clients: /"
            wait $sp
            echo "[$tag] server path, $mb MB model: the server's link carries $(awk -v m="$mb" 'BEGIN{printf "%.2f", 2 * m}') MB in and out per round (2 clients); an MPI rank sends $(awk -v m="$mb" 'BEGIN{printf "%.2f", m}') MB (ring, 2 ranks, float32 gradients)"
        done
    done
done
echo "load at the end: $(uptime | sed 's/.*load average: //')"
