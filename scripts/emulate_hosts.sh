#!/usr/bin/env bash
# Emulates N hosts on this machine with Linux network namespaces, so that multi-host MPI runs of
# the benchmarks (docs/benchmarks.md) can be rehearsed on one box, optionally with a bandwidth
# limit per host. Everything it creates lives in namespaces of its own: the root namespace gets
# no interface, no address and no route, so nothing here can leak onto the real network.
#
#   seqpar-br            holds the Linux bridge br0 (the "switch"), ports vh0 .. vh{N-1}
#   seqpar-h0..h{N-1}    one per host: lo, and veth0 = 10.77.0.(i+1)/24, whose peer vh<i> is a
#                        port of br0 in seqpar-br
#   --rate RATE          a tbf qdisc on each host's veth0 limits what that host sends (egress),
#                        so every link host->switch runs at RATE; see tbf_args for the numbers
#
# Usage (root for everything but --dry-run, status's namespace list and hostfile --hosts N):
#   scripts/emulate_hosts.sh up --hosts N [--rate RATE] [--dry-run]
#   scripts/emulate_hosts.sh down [--dry-run [--hosts N]]   removes every seqpar-h*/seqpar-br
#                                                    namespace; --hosts N: dry run as if N existed
#   scripts/emulate_hosts.sh status
#   scripts/emulate_hosts.sh hostfile [--hosts N]    Open MPI hostfile, "10.77.0.X slots=1" lines
#   scripts/emulate_hosts.sh exec I CMD...           runs CMD in host I's namespace
#   scripts/emulate_hosts.sh check [--seconds S]     measures host 0 <-> host 1: UDP round trip
#                                                    (1000 x 56 B) and TCP throughput 0 -> 1
# RATE is tc's notation with an explicit unit: 100mbit, 1gbit, 500kbit (bits per second).
# --dry-run prints every command, one per line prefixed with "+ ", and runs none (it only reads
# `ip netns list` and the state file; it works as any user). N is recorded in the state file
# $SEQPAR_EMULATE_STATE (default /run/seqpar-emulate-hosts) for down/status/hostfile.
#
# An MPI job across the emulated hosts (Open MPI 4.1.4; run with N = 2 on the 2-core dev VM, see
# docs/benchmarks.md). mpirun runs inside host 0, reaches the other hosts through
# scripts/netns_rsh.sh (an "ssh" that enters a namespace), and is told to use veth0 only:
#
#   export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
#   scripts/emulate_hosts.sh up --hosts 2 --rate 1gbit
#   scripts/emulate_hosts.sh hostfile > /tmp/seqpar.hosts
#   ip netns exec seqpar-h0 mpirun --allow-run-as-root --hostfile /tmp/seqpar.hosts \
#       --mca plm_rsh_agent "$PWD/scripts/netns_rsh.sh" --mca btl tcp,self \
#       --mca btl_tcp_if_include veth0 --mca oob_tcp_if_include veth0 --bind-to none -np 2 \
#       ip -4 -o addr show veth0
#   scripts/emulate_hosts.sh down
#
# Two things that look optional are not:
# - The hostfile must be a regular file: with `--hostfile <(scripts/emulate_hosts.sh hostfile)`
#   mpirun 4.1.4 fails with "No nodes are available for this job" (seen here; the same lines
#   in a file work).
# - --bind-to none: every emulated host is the whole machine to Open MPI, so its default binding
#   puts rank 0 of each host on core 0, all of them on the same real core, where the busy-polling
#   ranks take turns by scheduler time slice. 8-byte MPI ping-pong between two hosts on the idle
#   2-core dev VM: 8.0 ms per round trip with the default binding, 13-16 us with --bind-to none.
#   (Whatever else keeps the cores busy has the same effect: with another job running, --bind-to
#   none measured 8 ms too. Time emulated runs on an otherwise idle machine, P <= cores.)
# Notes: all hosts share this machine's hostname, file system, /tmp and /dev/shm, only the network
# is separate; with btl tcp,self Open MPI never uses shared memory between them. Open MPI treats
# 10.77.0.1 as local (it is an address of the namespace mpirun runs in) and launches the others
# through the agent. Latency is not injected here (tc netem is not available on the dev VM); the
# delay layer on the Communicator adds it (SEQPAR_COMM_DELAY_US; pass it to the ranks with
# mpirun -x, see docs/benchmarks.md).
set -euo pipefail
shopt -s inherit_errexit   # a failing $(...) (e.g. a bad --rate) stops the script too

PREFIX=seqpar-h
BRNS=seqpar-br
SUBNET=10.77.0
STATE=${SEQPAR_EMULATE_STATE:-/run/seqpar-emulate-hosts}
MAX_HOSTS=253   # 10.77.0.1 .. 10.77.0.253 (.254/.255 kept free)
PROG=$(basename "$0")

die() { echo "$PROG: $*" >&2; exit 1; }
# shellcheck disable=SC2016  # the $ is a literal in the sed address
usage() { sed -n '/^# Usage/,/^# \$SEQPAR_EMULATE_STATE/s/^# \{0,1\}//p' "$0" >&2; exit 2; }

DRY_RUN=0
# run CMD...: prints it (dry run) or runs it.
run() {
    if [[ $DRY_RUN == 1 ]]; then
        printf '+ %s\n' "$*"
    else
        "$@"
    fi
}

need_root() {
    [[ $(id -u) == 0 ]] || die "'$1' needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN); use --dry-run to see the commands"
    command -v ip >/dev/null || die "'ip' (iproute2) not found"
}

# Namespaces of ours that exist now, one per line (`ip netns list` works without root).
existing_namespaces() {
    ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^(${PREFIX}[0-9]+|${BRNS})\$" || true
}

check_hosts() {
    [[ $1 =~ ^[0-9]+$ ]] || die "--hosts must be a positive integer, got '$1'"
    (( $1 >= 1 && $1 <= MAX_HOSTS )) || die "--hosts must be between 1 and $MAX_HOSTS, got '$1'"
}

# Rate in bits per second from tc notation ("100mbit", "1gbit", "1.5gbit"); units required,
# because a bare number means bytes per second to tc and bits per second to most people.
rate_bits() {
    local r=${1,,} num unit mult
    [[ $r =~ ^([0-9]+(\.[0-9]+)?)(bit|kbit|mbit|gbit|tbit)$ ]] ||
        die "--rate must be a number with unit bit, kbit, mbit, gbit or tbit (e.g. 100mbit, 1gbit), got '$1'"
    num=${BASH_REMATCH[1]}
    unit=${BASH_REMATCH[3]}
    case $unit in
        bit) mult=1 ;; kbit) mult=1000 ;; mbit) mult=1000000 ;;
        gbit) mult=1000000000 ;; tbit) mult=1000000000000 ;;
    esac
    local bits
    bits=$(awk -v n="$num" -v m="$mult" 'BEGIN { printf "%.0f\n", n * m }')
    (( bits >= 8000 )) || die "--rate must be at least 8kbit (tc cannot express less), got '$1'"
    echo "$bits"
}

# tbf parameters for RATE. burst (bucket size): 1 ms worth of RATE, but at least 64 KiB, because
# veth does segmentation offload and hands tbf packets of up to 64 KiB (GSO); a smaller bucket
# makes tbf split them in software. The bucket lets one burst pass at full speed, so a message of
# S bytes takes about max(0, S - burst)/RATE: at 100mbit and 2 MiB that is 5 ms (3%) less than
# S/RATE. latency 20ms caps the queue at 20 ms of RATE plus the bucket: long enough that a TCP
# sender (kept to a few MB in flight by TCP small queues) is slowed by backpressure rather than
# drops, short enough that a small message behind a bulk transfer waits at most ~20 ms.
tbf_args() {
    local bits burst
    bits=$(rate_bits "$1")
    burst=$(( bits / 8 / 1000 ))
    (( burst >= 65536 )) || burst=65536
    echo "rate $1 burst $burst latency 20ms"
}

cmd_up() {
    local n="" rate=""
    while (( $# )); do
        case $1 in
            --hosts) (( $# >= 2 )) || die "--hosts needs a value"; n=$2; shift 2 ;;
            --hosts=*) n=${1#*=}; shift ;;
            --rate) (( $# >= 2 )) || die "--rate needs a value"; rate=$2; shift 2 ;;
            --rate=*) rate=${1#*=}; shift ;;
            --dry-run) DRY_RUN=1; shift ;;
            *) die "up: unknown argument '$1' (expected --hosts N [--rate RATE] [--dry-run])" ;;
        esac
    done
    [[ -n $n ]] || die "up: --hosts N is required"
    check_hosts "$n"
    local tbf=""
    [[ -z $rate ]] || tbf=$(tbf_args "$rate")

    local present
    present=$(existing_namespaces | tr '\n' ' ')
    if [[ -n $present ]]; then
        if [[ $DRY_RUN == 1 ]]; then
            echo "$PROG: note: namespaces already exist (${present% }); a real 'up' would refuse; run '$PROG down' first" >&2
        else
            die "namespaces already exist (${present% }); run '$PROG down' first"
        fi
    fi
    [[ $DRY_RUN == 1 ]] || need_root up

    # On failure half way (set -e exits), remove what was made so that 'up' can simply be run
    # again. An EXIT trap, because an ERR trap does not reach into functions without set -E.
    if [[ $DRY_RUN == 0 ]]; then
        trap 'rc=$?; if (( rc != 0 )); then echo "$PROG: up failed; removing what it created" >&2; cmd_down >/dev/null 2>&1 || true; fi' EXIT
    fi
    run ip netns add "$BRNS"
    run ip -n "$BRNS" link set lo up
    run ip -n "$BRNS" link add br0 type bridge
    run ip -n "$BRNS" link set br0 up
    local i
    for (( i = 0; i < n; i++ )); do
        local ns=$PREFIX$i
        run ip netns add "$ns"
        run ip -n "$ns" link set lo up
        # Created inside the host's namespace with its peer created directly in seqpar-br, so
        # neither end ever appears in the root namespace.
        run ip -n "$ns" link add veth0 type veth peer name "vh$i" netns "$BRNS"
        run ip -n "$ns" addr add "$SUBNET.$(( i + 1 ))/24" dev veth0
        run ip -n "$ns" link set veth0 up
        run ip -n "$BRNS" link set "vh$i" master br0
        run ip -n "$BRNS" link set "vh$i" up
        if [[ -n $tbf ]]; then
            # shellcheck disable=SC2086  # tbf holds several words on purpose
            run tc -n "$ns" qdisc add dev veth0 root tbf $tbf
        fi
    done
    if [[ $DRY_RUN == 1 ]]; then
        printf '+ %s\n' "printf 'hosts=$n\\nrate=${rate:-none}\\n' > $STATE"
    else
        printf 'hosts=%s\nrate=%s\n' "$n" "${rate:-none}" > "$STATE"
        trap - EXIT
        echo "$PROG: $n hosts up (${SUBNET}.1 .. ${SUBNET}.$n, rate ${rate:-unlimited}); state in $STATE"
    fi
}

cmd_down() {
    local n=""
    while (( $# )); do
        case $1 in
            --dry-run) DRY_RUN=1; shift ;;
            --hosts) (( $# >= 2 )) || die "--hosts needs a value"; n=$2; shift 2 ;;
            --hosts=*) n=${1#*=}; shift ;;
            *) die "down: unknown argument '$1' (expected [--dry-run [--hosts N]])" ;;
        esac
    done
    local present ns i
    present=$(existing_namespaces)
    if [[ -n $n ]]; then
        # Only for a dry run: show what 'down' does after 'up --hosts N', whatever exists now.
        [[ $DRY_RUN == 1 ]] || die "down: --hosts N is only for --dry-run (a real 'down' removes what exists)"
        check_hosts "$n"
        present=$(for (( i = 0; i < n; i++ )); do echo "$PREFIX$i"; done; echo "$BRNS")
    fi
    if [[ -z $present && ! -e $STATE ]]; then
        echo "$PROG: nothing to remove (no $PREFIX*/$BRNS namespaces, no $STATE)" >&2
        return 0
    fi
    [[ $DRY_RUN == 1 || -z $present ]] || need_root down
    # Deleting a host namespace destroys its veth0 and with it the peer port on br0; the bridge
    # goes with seqpar-br. Hosts first, sorted numerically, then the bridge.
    local hosts=()
    mapfile -t hosts < <(host_namespaces "$present")
    for ns in "${hosts[@]}"; do
        if [[ $DRY_RUN == 0 ]] && [[ -n $(ip netns pids "$ns" 2>/dev/null) ]]; then
            echo "$PROG: warning: processes still run in $ns (pids $(ip netns pids "$ns" | tr '\n' ' ')); its network lives on until they exit" >&2
        fi
        run ip netns del "$ns"
    done
    if grep -qx "$BRNS" <<<"$present"; then
        run ip netns del "$BRNS"
    fi
    run rm -f "$STATE"
}

# Host namespaces among the names in $1 (one per line), in numeric order, one per line.
host_namespaces() {
    grep -E "^${PREFIX}[0-9]+\$" <<<"$1" | sort -t h -k 2 -n || true
}

state_hosts() {
    [[ -r $STATE ]] || return 1
    sed -n 's/^hosts=//p' "$STATE"
}

cmd_status() {
    (( $# == 0 )) || die "status: takes no arguments"
    if [[ -r $STATE ]]; then
        echo "state file $STATE: $(tr '\n' ' ' < "$STATE")"
    else
        echo "state file $STATE: absent"
    fi
    local present ns
    present=$(existing_namespaces)
    if [[ -z $present ]]; then
        echo "no $PREFIX*/$BRNS namespaces"
        return 0
    fi
    echo "namespaces: $(tr '\n' ' ' <<<"$present")"
    if [[ $(id -u) != 0 ]]; then
        echo "(addresses, qdiscs and processes need root)"
        return 0
    fi
    local hosts=()
    mapfile -t hosts < <(host_namespaces "$present")
    for ns in "${hosts[@]}"; do
        local addr qdisc pids
        addr=$(ip -n "$ns" -4 -o addr show dev veth0 2>/dev/null | awk '{print $4}')
        qdisc=$(tc -n "$ns" qdisc show dev veth0 2>/dev/null | head -n 1)
        pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
        echo "$ns: veth0 ${addr:-?}; qdisc: ${qdisc:-?}; pids: ${pids:-none}"
    done
}

cmd_hostfile() {
    local n=""
    while (( $# )); do
        case $1 in
            --hosts) (( $# >= 2 )) || die "--hosts needs a value"; n=$2; shift 2 ;;
            --hosts=*) n=${1#*=}; shift ;;
            *) die "hostfile: unknown argument '$1' (expected [--hosts N])" ;;
        esac
    done
    if [[ -z $n ]]; then
        n=$(state_hosts) || die "hostfile: no state file $STATE (run 'up' first, or pass --hosts N)"
    fi
    check_hosts "$n"
    local i
    for (( i = 1; i <= n; i++ )); do
        echo "$SUBNET.$i slots=1"
    done
}

cmd_exec() {
    (( $# >= 2 )) || die "exec: usage: exec I CMD... (I = host index from 0)"
    local i=$1
    shift
    [[ $i =~ ^[0-9]+$ ]] || die "exec: host index must be a non-negative integer, got '$i'"
    existing_namespaces | grep -qx "$PREFIX$i" || die "exec: namespace $PREFIX$i does not exist (run 'up' first)"
    exec ip netns exec "$PREFIX$i" "$@"
}

# The network check, in Python because the dev VM has neither ping nor iperf3. Round trip: 1000
# UDP ping-pongs of 56 bytes (ping's default payload), after 50 warm-up ones. Throughput: one TCP
# stream sending 1 MiB writes for S seconds; the receiver divides the bytes it got by the time
# from its first to its last byte (application payload, so about 95% of a tbf rate, which counts
# Ethernet/IP/TCP headers too).
NETCHECK_PY='
import socket, statistics, sys, time
mode, host = sys.argv[1], sys.argv[2]
if mode == "udp-server":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((host, 5201)); s.settimeout(20)
    while True:
        d, a = s.recvfrom(64)
        if d == b"quit": break
        s.sendto(d, a)
elif mode == "udp-client":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2); rtts = []
    for i in range(1050):
        t = time.perf_counter(); s.sendto(b"x" * 56, (host, 5201)); s.recvfrom(64)
        if i >= 50: rtts.append(time.perf_counter() - t)
    s.sendto(b"quit", (host, 5201)); rtts.sort(); us = lambda x: "%.1f us" % (x * 1e6)
    print("UDP round trip, 56 B, n=%d: min %s, median %s, p90 %s, max %s" % (len(rtts), us(rtts[0]),
          us(statistics.median(rtts)), us(rtts[int(0.9 * len(rtts))]), us(rtts[-1])))
elif mode == "tcp-server":
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, 5202)); s.listen(1); s.settimeout(20); c, _ = s.accept(); n, t0 = 0, None
    while True:
        d = c.recv(1 << 20)
        if not d: break
        if t0 is None: t0 = time.perf_counter()
        n += len(d); t1 = time.perf_counter()
    print("TCP one stream: %.1f MB in %.2f s = %.1f Mbit/s" % (n / 1e6, t1 - t0, n * 8 / (t1 - t0) / 1e6))
elif mode == "tcp-client":
    c = socket.create_connection((host, 5202)); buf = bytes(1 << 20); end = time.perf_counter() + float(sys.argv[3])
    while time.perf_counter() < end: c.sendall(buf)
    c.close()
'

cmd_check() {
    local secs=3
    while (( $# )); do
        case $1 in
            --seconds) (( $# >= 2 )) || die "--seconds needs a value"; secs=$2; shift 2 ;;
            --seconds=*) secs=${1#*=}; shift ;;
            *) die "check: unknown argument '$1' (expected [--seconds S])" ;;
        esac
    done
    if ! [[ $secs =~ ^[0-9]+$ ]] || (( secs < 1 || secs > 60 )); then
        die "--seconds must be an integer from 1 to 60, got '$secs'"
    fi
    need_root check
    local present
    present=$(existing_namespaces)
    if ! grep -qx "${PREFIX}0" <<<"$present" || ! grep -qx "${PREFIX}1" <<<"$present"; then
        die "check: needs hosts 0 and 1 (scripts/emulate_hosts.sh up --hosts 2)"
    fi
    local to=$SUBNET.2
    echo "state: $(tr '\n' ' ' < "$STATE" 2>/dev/null || echo none); $(tc -n "${PREFIX}0" qdisc show dev veth0 | head -n 1)"
    timeout 30 ip netns exec "${PREFIX}1" python3 -c "$NETCHECK_PY" udp-server "$to" &
    local server=$!
    sleep 0.5
    timeout 30 ip netns exec "${PREFIX}0" python3 -c "$NETCHECK_PY" udp-client "$to"
    wait "$server"
    timeout $(( secs + 30 )) ip netns exec "${PREFIX}1" python3 -c "$NETCHECK_PY" tcp-server "$to" &
    server=$!
    sleep 0.5
    timeout $(( secs + 30 )) ip netns exec "${PREFIX}0" python3 -c "$NETCHECK_PY" tcp-client "$to" "$secs"
    wait "$server"
}

(( $# >= 1 )) || usage
sub=$1
shift
case $sub in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    status) cmd_status "$@" ;;
    hostfile) cmd_hostfile "$@" ;;
    exec) cmd_exec "$@" ;;
    check) cmd_check "$@" ;;
    -h|--help|help) usage ;;
    *) echo "$PROG: unknown subcommand '$sub'" >&2; usage ;;
esac
