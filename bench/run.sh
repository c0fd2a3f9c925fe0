#!/usr/bin/env bash
# bench/run.sh: masq beside kernel NAT, pasta and slirp4netns, in network
# namespaces of its own, as root. The entry point of `make bench`.
#
#   out   198.18.0.1/24 2001:db8::1/64   iperf3, tcprr and idleconns servers
#    | veth eth0 <-> eth0, MTU under test
#   pod   198.18.0.2/24 2001:db8::2/64   the implementation runs here
#    | kernel: veth + nftables NAT; pasta, slirp4netns, masq: a tap in guest
#   guest 10.0.2.2/24 (slirp4netns: 10.0.2.100), the clients, an iperf3 server
#
# Each implementation connects a fresh set of namespaces in turn, at each
# MTU; the tests run, the namespaces go. Results land in $OUT_DIR
# (bench/out): runs.jsonl (one line per measurement), raw/ (every tool's
# output), results.json, tables.txt, chart.png. See bench/README.md.
#
# Knobs (environment):
#   DURATION=3           seconds per throughput/rate test
#   RUNS=3               runs of each test (the tables show medians)
#   MTUS="1500 65520"    guest (and link) MTUs
#   IMPLS="kernel pasta slirp4netns masq"   (MASQ_IMPLS too); comma or space
#   UDP_RATE=1G          iperf3 -b for the UDP test
#   IDLE_CONNS=10000     idle guest TCP connections for the RSS test (0: skip)
#   IDLE_IMPLS="pasta masq"  who gets that test (at the first MTU only);
#                        slirp4netns needs minutes and ~2.5 GiB for 10,000
#   TCP_CC=              iperf3 -C (e.g. reno); empty: the namespace default
#   PASTA_TXQUEUELEN=    set on pasta's tap in the guest (see README); empty: as pasta leaves it
#   MASQ=bin/masq        masq binary (built into a temp dir when missing)
#   DHCP_CLIENT=udhcpc   or dhclient
#   OUT_DIR=bench/out
#
# Only 198.18.0.0/15, 2001:db8::/32, 10.0.2.0/24 and fd10:0:2::/120 are used,
# inside namespaces this script makes; everything it makes is removed on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-3}
RUNS=${RUNS:-3}
MTUS=$(tr ',' ' ' <<<"${MTUS:-1500 65520}")
IMPLS=$(tr ',' ' ' <<<"${IMPLS:-${MASQ_IMPLS:-kernel pasta slirp4netns masq}}")
UDP_RATE=${UDP_RATE:-1G}
IDLE_CONNS=${IDLE_CONNS:-10000}
IDLE_IMPLS=$(tr ',' ' ' <<<"${IDLE_IMPLS:-pasta masq}")
TCP_CC=${TCP_CC:-}
PASTA_TXQUEUELEN=${PASTA_TXQUEUELEN:-}
OUT_DIR=${OUT_DIR:-$ROOT/bench/out}

readonly OUT_ADDR4=198.18.0.1 POD_ADDR4=198.18.0.2
readonly OUT_ADDR6=2001:db8::1 POD_ADDR6=2001:db8::2
readonly GATEWAY4=10.0.2.1 GUEST4=10.0.2.2 GATEWAY6=fd10:0:2::1 GUEST6=fd10:0:2::2
readonly IPERF_PORT=5201 RR_PORT=7000 IDLE_PORT=7001
readonly CMD_TIMEOUT=20   # seconds for any short step (ip, nft, a probe)
readonly READY_TIMEOUT=15 # seconds for an implementation to connect the guest
readonly CLK_TCK=$(getconf CLK_TCK)

SUFFIX=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
WORK=       # temp dir: tools, logs, DHCP client files
NAMESPACES=() # made by the current round, deleted by teardown
PIDS=()       # background processes of the current round, ended by teardown
ETC_NETNS_MADE=false
# Set per round: the namespaces, the implementation's pid (empty for the
# kernel) and whether it set up inbound forwarding.
OUT= POD= GUEST= IMPL_PID= INBOUND=false

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

# bounded CMD...: run CMD, killed after CMD_TIMEOUT.
bounded() { timeout -k 2 "$CMD_TIMEOUT" "$@"; }
# run NS CMD...: run CMD inside namespace NS, bounded.
run() { local ns=$1; shift; bounded ip netns exec "$ns" "$@"; }
ipc() { bounded ip "$@"; }

# spawn NS LOG CMD...: start CMD inside NS in the background, output to LOG;
# teardown ends it. Sets SPAWNED to its pid (ip netns exec execs CMD).
spawn() {
	local ns=$1 out=$2; shift 2
	ip netns exec "$ns" "$@" >"$out" 2>&1 &
	SPAWNED=$!
	PIDS+=("$SPAWNED")
}

# stop_pid PID: SIGTERM, then SIGKILL after 5 s.
stop_pid() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || return 0
	for i in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
}

# wait_for SECONDS CMD...: poll CMD every 20 ms until it succeeds.
wait_for() {
	local deadline=$((SECONDS + $1)); shift
	until "$@" >/dev/null 2>&1; do
		((SECONDS < deadline)) || return 1
		sleep 0.02
	done
}

listening() { ip netns exec "$1" ss -Hltn "sport = :$2" | grep -q .; }

teardown() {
	local pid ns i
	if [[ -n $WORK && -s $WORK/dhclient.pid ]]; then
		pid=$(cat "$WORK/dhclient.pid")
		[[ $(cat "/proc/$pid/comm" 2>/dev/null) == dhclient ]] && stop_pid "$pid"
		rm -f "$WORK/dhclient.pid"
	fi
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		stop_pid "${PIDS[i]}"
		wait "${PIDS[i]}" 2>/dev/null || true
	done
	PIDS=()
	for ns in "${NAMESPACES[@]}"; do
		ip netns del "$ns" 2>/dev/null || true
	done
	NAMESPACES=()
	[[ -n $POD ]] && rm -rf "/etc/netns/$POD"
	IMPL_PID= INBOUND=false
}

cleanup() {
	local status=$?
	set +e
	trap - INT TERM
	teardown
	$ETC_NETNS_MADE && rmdir /etc/netns 2>/dev/null
	[[ -n $WORK ]] && rm -rf "$WORK"
	exit "$status"
}

need() { # need PROGRAM PACKAGE
	command -v "$1" >/dev/null || MISSING+=("$2 (for $1)")
}

has_impl() { [[ " $IMPLS " == *" $1 "* ]]; }

step_preflight() {
	((EUID == 0)) || die "must run as root (it creates network namespaces, veths, taps and nftables rules); try: sudo $0"
	MISSING=()
	need ip iproute2
	need iperf3 iperf3
	need timeout coreutils
	need go golang
	has_impl kernel && need nft nftables
	has_impl pasta && need pasta passt
	has_impl slirp4netns && need slirp4netns slirp4netns
	if has_impl masq; then
		if [[ -n ${DHCP_CLIENT:-} ]]; then
			need "$DHCP_CLIENT" "udhcpc or isc-dhcp-client"
		elif command -v udhcpc >/dev/null; then
			DHCP_CLIENT=udhcpc
		elif command -v dhclient >/dev/null; then
			DHCP_CLIENT=dhclient
		else
			MISSING+=("udhcpc or isc-dhcp-client (a DHCP client for masq's guest)")
		fi
	fi
	((${#MISSING[@]} == 0)) || die "missing Debian packages: ${MISSING[*]}; install them with apt-get install"
	local impl
	for impl in $IMPLS; do
		[[ $(type -t "connect_$impl") == function ]] || die "unknown implementation $impl in IMPLS (known: kernel pasta slirp4netns masq)"
	done
	[[ $DURATION =~ ^[0-9]+$ && $RUNS =~ ^[0-9]+$ && $IDLE_CONNS =~ ^[0-9]+$ ]] ||
		die "DURATION, RUNS and IDLE_CONNS must be whole numbers"
	ulimit -n "$(ulimit -Hn)" # For the idle connections: every child inherits it.
	WORK=$(mktemp -d /tmp/masq-bench.XXXXXX)
}

step_build() {
	log "building the bench tools"
	# bench/ is a Go module of its own (bench/go.mod).
	(cd "$ROOT/bench" && go build -o "$WORK/bin/" ./cmd/...) || die "go build ./cmd/... in bench/ failed"
	if has_impl masq; then
		MASQ=${MASQ:-$ROOT/bin/masq}
		if [[ ! -x $MASQ ]]; then
			log "building masq ($MASQ is missing)"
			(cd "$ROOT" && CGO_ENABLED=0 go build -o "$WORK/bin/masq" ./cmd/masq) || die "go build ./cmd/masq failed"
			MASQ=$WORK/bin/masq
		fi
		MASQ=$(realpath "$MASQ")
	fi
}

step_outdir() {
	mkdir -p "$OUT_DIR"
	rm -rf "$OUT_DIR/raw" "$OUT_DIR/runs.jsonl" "$OUT_DIR/logs"
	mkdir -p "$OUT_DIR/raw" "$OUT_DIR/logs"
	: >"$OUT_DIR/runs.jsonl"
	local cpu
	cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
	cat >"$OUT_DIR/meta.json" <<-EOF
		{
		  "date": "$(date -u +%Y-%m-%dT%H:%MZ)",
		  "kernel": "$(jstr "$(uname -r)")",
		  "cpu": "$(jstr "$cpu")",
		  "nproc": $(nproc),
		  "duration": $DURATION,
		  "runs": $RUNS,
		  "mtus": "$MTUS",
		  "udp_rate": "$UDP_RATE",
		  "tcp_cc": "$(jstr "${TCP_CC:-$(sysctl -n net.ipv4.tcp_congestion_control)}")",
		  "pasta_txqueuelen": "$PASTA_TXQUEUELEN",
		  "iperf3": "$(jstr "$(iperf3 --version 2>/dev/null | head -1)")",
		  "passt": "$(jstr "$(dpkg-query -W -f '${Version}' passt 2>/dev/null)")",
		  "slirp4netns": "$(jstr "$(dpkg-query -W -f '${Version}' slirp4netns 2>/dev/null)")",
		  "masq": "$(jstr "$(git -C "$ROOT" describe --tags --always --dirty 2>/dev/null || echo unknown)")"
		}
	EOF
}

# jstr S: S with what would break a JSON string removed.
jstr() { printf '%s' "$1" | tr '\n\t' '  ' | tr -d '"\\\000-\037'; }

# record IMPL MTU TEST RUN STATUS [key=value...]: one line of runs.jsonl.
# Values are numbers, except error= and file= (strings).
record() {
	local line kv k v
	line=$(printf '{"impl":"%s","mtu":%s,"test":"%s","run":%s,"status":"%s"' "$1" "$2" "$3" "$4" "$5")
	shift 5
	for kv in "$@"; do
		k=${kv%%=*} v=${kv#*=}
		[[ -n $v ]] || continue
		case $k in
		error | file) line+=$(printf ',"%s":"%s"' "$k" "$(jstr "$v")") ;;
		*) line+=$(printf ',"%s":%s' "$k" "$v") ;;
		esac
	done
	printf '%s}\n' "$line" >>"$OUT_DIR/runs.jsonl"
}

# --- topology -------------------------------------------------------------

# topology MTU: out and pod joined by a veth, an empty guest; servers in out.
topology() {
	local mtu=$1 ns round
	round=$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')
	OUT=masq-bench-$SUFFIX-$round-out
	POD=masq-bench-$SUFFIX-$round-pod
	GUEST=masq-bench-$SUFFIX-$round-guest
	for ns in "$OUT" "$POD" "$GUEST"; do
		ipc netns add "$ns" || return 1
		NAMESPACES+=("$ns")
		ipc -n "$ns" link set lo up || return 1
	done
	ipc -n "$OUT" link add eth0 mtu "$mtu" type veth peer name eth0 netns "$POD" mtu "$mtu" &&
		ipc -n "$OUT" link set eth0 up &&
		ipc -n "$OUT" addr add "$OUT_ADDR4/24" dev eth0 &&
		ipc -n "$OUT" addr add "$OUT_ADDR6/64" dev eth0 nodad &&
		ipc -n "$POD" link set eth0 up &&
		ipc -n "$POD" addr add "$POD_ADDR4/24" dev eth0 &&
		ipc -n "$POD" addr add "$POD_ADDR6/64" dev eth0 nodad &&
		ipc -n "$POD" route add default via "$OUT_ADDR4" &&
		ipc -n "$POD" -6 route add default via "$OUT_ADDR6" || return 1
	# tcprr's crr leaves a TIME_WAIT behind per connection where the client
	# side closes: the guest, and the pod for the proxies. Give both room.
	for ns in "$GUEST" "$POD"; do
		run "$ns" sysctl -qw net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse=1 || return 1
	done
	# A pod's resolv.conf, for masq's DHCP answer (ip netns exec bind-mounts it).
	[[ -d /etc/netns ]] || ETC_NETNS_MADE=true
	mkdir -p "/etc/netns/$POD"
	printf 'search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 198.18.0.53\noptions ndots:5\n' \
		>"/etc/netns/$POD/resolv.conf"

	spawn "$OUT" "$WORK/iperf3-out.log" iperf3 -s -p "$IPERF_PORT"
	spawn "$OUT" "$WORK/tcprr.log" "$WORK/bin/tcprr" -s -l ":$RR_PORT"
	spawn "$OUT" "$WORK/idleconns.log" "$WORK/bin/idleconns" -s -l ":$IDLE_PORT"
	wait_for 10 listening "$OUT" "$IPERF_PORT" &&
		wait_for 10 listening "$OUT" "$RR_PORT" &&
		wait_for 10 listening "$OUT" "$IDLE_PORT"
}

# --- implementations: connect_IMPL MTU sets IMPL_PID and INBOUND --------------

connect_kernel() {
	local mtu=$1
	ipc -n "$POD" link add vm0 mtu "$mtu" type veth peer name eth0 netns "$GUEST" mtu "$mtu" &&
		ipc -n "$POD" link set vm0 up &&
		ipc -n "$POD" addr add "$GATEWAY4/24" dev vm0 &&
		ipc -n "$POD" addr add "$GATEWAY6/120" dev vm0 nodad &&
		ipc -n "$GUEST" link set eth0 up &&
		ipc -n "$GUEST" addr add "$GUEST4/24" dev eth0 &&
		ipc -n "$GUEST" addr add "$GUEST6/120" dev eth0 nodad &&
		ipc -n "$GUEST" route add default via "$GATEWAY4" &&
		ipc -n "$GUEST" -6 route add default via "$GATEWAY6" &&
		run "$POD" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 || return 1
	# What KubeVirt's masquerade binding writes: masquerade out, dnat in.
	run "$POD" nft -f - <<-EOF || return 1
		table inet masqbench {
			chain prerouting {
				type nat hook prerouting priority dstnat; policy accept;
				iifname "eth0" ip daddr $POD_ADDR4 tcp dport $IPERF_PORT dnat ip to $GUEST4
				iifname "eth0" ip6 daddr $POD_ADDR6 tcp dport $IPERF_PORT dnat ip6 to $GUEST6
				iifname "eth0" ip daddr $POD_ADDR4 udp dport $IPERF_PORT dnat ip to $GUEST4
				iifname "eth0" ip6 daddr $POD_ADDR6 udp dport $IPERF_PORT dnat ip6 to $GUEST6
			}
			chain postrouting {
				type nat hook postrouting priority srcnat; policy accept;
				oifname "eth0" ip saddr 10.0.2.0/24 masquerade
				oifname "eth0" ip6 saddr fd10:0:2::/120 masquerade
			}
		}
	EOF
	INBOUND=true
}

guest_has_addr() { ip -n "$GUEST" -4 addr show dev "$1" 2>/dev/null | grep -q "inet $2/"; }

connect_pasta() {
	local mtu=$1
	# --runas 0:0: as root pasta would drop to nobody and then fail to
	# enter the guest namespace. -T/-U none: no scanning for ports bound in
	# the guest (the guest's iperf3 server would otherwise be forwarded back).
	spawn "$POD" "$WORK/pasta.log" pasta --config-net --foreground --quiet --runas 0:0 \
		--netns "/run/netns/$GUEST" --ns-ifname eth0 -4 --mtu "$mtu" \
		--address "$GUEST4" --netmask 24 --gateway "$GATEWAY4" \
		-t "$IPERF_PORT" -u "$IPERF_PORT" -T none -U none
	IMPL_PID=$SPAWNED
	wait_for "$READY_TIMEOUT" guest_has_addr eth0 "$GUEST4" || return 1
	if [[ -n $PASTA_TXQUEUELEN ]]; then
		ipc -n "$GUEST" link set eth0 txqueuelen "$PASTA_TXQUEUELEN" || return 1
	fi
	INBOUND=true
}

connect_slirp4netns() {
	local mtu=$1
	# slirp4netns's guest is 10.0.2.100, its gateway 10.0.2.2.
	spawn "$POD" "$WORK/slirp4netns.log" slirp4netns --configure --mtu="$mtu" \
		--disable-host-loopback --api-socket "$WORK/slirp.sock" \
		--netns-type=path "/run/netns/$GUEST" eth0
	IMPL_PID=$SPAWNED
	wait_for "$READY_TIMEOUT" guest_has_addr eth0 10.0.2.100 &&
		wait_for "$READY_TIMEOUT" test -S "$WORK/slirp.sock" &&
		bounded "$WORK/bin/slirpfwd" -sock "$WORK/slirp.sock" -port "$IPERF_PORT" &&
		bounded "$WORK/bin/slirpfwd" -sock "$WORK/slirp.sock" -port "$IPERF_PORT" -proto udp || return 1
	INBOUND=true
}

masq_ready() { grep -q 'msg="masq ready"' "$WORK/masq.log"; }

connect_masq() {
	local mtu=$1 t0 ports=()
	# Inbound forwarding lands later; until masq run has --ports, its
	# inbound rows are n/a.
	if "$MASQ" run --help 2>/dev/null | grep -q -- '--ports'; then
		ports=(--ports "$IPERF_PORT/tcp+udp")
		INBOUND=true
	fi
	t0=$(date +%s.%N)
	spawn "$POD" "$WORK/masq.log" "$MASQ" run --tap tap0 --guest-netns "/run/netns/$GUEST" \
		--mtu "$mtu" "${ports[@]}" ${MASQ_ARGS:-}
	IMPL_PID=$SPAWNED
	wait_for "$READY_TIMEOUT" masq_ready || { LEASE_ERROR="masq not ready"; return 1; }
	if dhcp_lease tap0; then
		LEASE_S=$(awk -v a="$t0" -v b="$(cat "$WORK/lease.time")" 'BEGIN { printf "%.3f", b - a }')
	else
		LEASE_ERROR="no DHCP lease from masq; static address instead"
		ipc -n "$GUEST" link set tap0 mtu "$mtu" up &&
			ipc -n "$GUEST" addr replace "$GUEST4/24" dev tap0 &&
			ipc -n "$GUEST" route replace default via "$GATEWAY4" dev tap0 || return 1
	fi
	# replace, not add: masq's router advertisements may have configured
	# the guest's IPv6 address and default route already.
	ipc -n "$GUEST" addr replace "$GUEST6/120" dev tap0 nodad &&
		ipc -n "$GUEST" -6 route replace default via "$GATEWAY6" dev tap0
}

# dhcp_lease IF: ask for a lease on IF in the guest; the client's script
# configures the interface and stamps $WORK/lease.time when bound.
dhcp_lease() {
	local ifname=$1
	rm -f "$WORK/lease.time"
	cat >"$WORK/lease-script" <<-'EOF'
		#!/bin/sh
		# $1 (udhcpc) or $reason (dhclient); configure, then stamp the time.
		ev=${1:-$reason}
		case "$ev" in
		bound|renew|BOUND|RENEW|REBIND|REBOOT)
			ifc=${interface}
			addr=${ip:-$new_ip_address} mask=${subnet:-$new_subnet_mask}
			gw=${router:-$new_routers} m=${mtu:-$new_interface_mtu}
			[ -n "$m" ] && ip link set dev "$ifc" mtu "$m"
			ip addr replace "$addr/$mask" dev "$ifc"
			for r in $gw; do ip route replace default via "$r" dev "$ifc"; break; done
			date +%s.%N >"$LEASE_TIME_FILE"
			;;
		deconfig|PREINIT) ip link set dev "$interface" up ;;
		esac
		exit 0
	EOF
	chmod +x "$WORK/lease-script"
	if [[ $DHCP_CLIENT == udhcpc ]]; then
		LEASE_TIME_FILE=$WORK/lease.time run "$GUEST" udhcpc -i "$ifname" -f -n -q -t 10 -T 1 \
			-s "$WORK/lease-script" -O mtu >"$WORK/dhcp.log" 2>&1 || return 1
	else
		printf 'timeout 15;\ninitial-interval 1;\nrequest subnet-mask, routers, interface-mtu;\n' >"$WORK/dhclient.conf"
		LEASE_TIME_FILE=$WORK/lease.time run "$GUEST" dhclient -1 -cf "$WORK/dhclient.conf" \
			-sf "$WORK/lease-script" -lf "$WORK/dhclient.leases" -pf "$WORK/dhclient.pid" \
			"$ifname" >"$WORK/dhcp.log" 2>&1 || return 1
	fi
	[[ -s $WORK/lease.time ]]
}

# --- measurements ---------------------------------------------------------

# cost_begin / cost_end: the implementation's CPU time and peak RSS over one
# test, from /proc (writing 5 to clear_refs resets VmHWM to the current RSS).
cost_begin() {
	COST_TICKS=
	[[ -n $IMPL_PID && -r /proc/$IMPL_PID/stat ]] || return 0
	echo 5 >"/proc/$IMPL_PID/clear_refs" 2>/dev/null || true
	COST_TICKS=$(proc_ticks "$IMPL_PID")
}

cost_end() {
	COST_CPU= COST_RSS=
	[[ -n $COST_TICKS && -r /proc/$IMPL_PID/stat ]] || return 0
	COST_CPU=$(awk -v a="$COST_TICKS" -v b="$(proc_ticks "$IMPL_PID")" -v hz="$CLK_TCK" \
		'BEGIN { printf "%.2f", (b - a) / hz }')
	COST_RSS=$(awk '/^VmHWM:/ { print $2 }' "/proc/$IMPL_PID/status")
}

# proc_ticks PID: utime+stime (fields 14 and 15, after the parenthesised comm).
proc_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }

proc_rss_mib() { awk '/^VmRSS:/ { printf "%.2f", $2 / 1024 }' "/proc/$1/status"; }

impl_alive() { [[ -z $IMPL_PID ]] || kill -0 "$IMPL_PID" 2>/dev/null; }

# measure IMPL MTU TEST RUN NS CMD...: run a client in NS, bounded by the
# test's duration, its output to raw/; record the run.
measure() {
	local impl=$1 mtu=$2 test=$3 n=$4 ns=$5; shift 5
	local file=raw/$impl-$mtu-$test-$n.json status=ok err= rc=0
	cost_begin
	timeout -k 2 $((DURATION + 20)) ip netns exec "$ns" "$@" >"$OUT_DIR/$file" 2>"$WORK/client.err" || rc=$?
	if ((rc != 0)); then
		status=fail
		err="exit status $rc$( ((rc == 124)) && echo ' (timed out)'): $(head -c 300 "$WORK/client.err")"
	fi
	cost_end
	impl_alive || { status=fail err="the implementation exited; $err"; }
	record "$impl" "$mtu" "$test" "$n" "$status" "file=$file" "cpu_s=$COST_CPU" "rss_kib=$COST_RSS" "error=$err"
	printf '    %-10s run %s: %s %s\n' "$test" "$n" "$status" "$err" >&2
}

# na IMPL MTU REASON TEST...: record each test as not applicable.
na() {
	local impl=$1 mtu=$2 why=$3 test n; shift 3
	for test; do
		for n in $(seq "$RUNS"); do
			record "$impl" "$mtu" "$test" "$n" na "error=$why"
		done
	done
}

# The tests in the order they run, every run of one before the next. crr
# and crr_server go last: they leave thousands of closed connections
# behind, which some implementations keep for a while (slirp4netns scans
# them on every event and its RSS grows by hundreds of MiB), slowing
# whatever runs after.
readonly TESTS=$(tr "," " " <<<"${TESTS:-tcp_out_1 tcp_out_4 tcp_in_1 tcp_in_4 udp_out udp_in udp_out_max udp_in_max udp_64 udp_in_64 rr rr_load crr crr_server}")
readonly IN_TESTS="tcp_in_1 tcp_in_4 udp_in udp_in_max udp_in_64" # the rest are guest→out

# run_test IMPL MTU TEST RUN: one run of TEST, through measure.
run_test() {
	local impl=$1 mtu=$2 test=$3 n=$4 iperf=(-J -t "$DURATION" -p "$IPERF_PORT")
	[[ -n $TCP_CC ]] && iperf+=(-C "$TCP_CC")
	case $test in
	tcp_out_1) measure "$@" "$GUEST" iperf3 -c "$OUT_ADDR4" "${iperf[@]}" ;;
	tcp_out_4) measure "$@" "$GUEST" iperf3 -c "$OUT_ADDR4" -P 4 "${iperf[@]}" ;;
	tcp_in_1) measure "$@" "$OUT" iperf3 -c "$POD_ADDR4" "${iperf[@]}" ;;
	tcp_in_4) measure "$@" "$OUT" iperf3 -c "$POD_ADDR4" -P 4 "${iperf[@]}" ;;
	# Datagrams fill the MTU (IPv4 + UDP headers: 28 bytes). -w 4M: with the
	# default socket buffers iperf3's own bursts overflow the receiver, and
	# even kernel NAT would show 10-30 % loss at 1 Gbit/s.
	udp_out) measure "$@" "$GUEST" iperf3 -c "$OUT_ADDR4" -u -b "$UDP_RATE" -l $((mtu - 28)) -w 4M \
		-J -t "$DURATION" -p "$IPERF_PORT" ;;
	# The same from out, through the forwarded port, to the guest's server.
	udp_in) measure "$@" "$OUT" iperf3 -c "$POD_ADDR4" -u -b "$UDP_RATE" -l $((mtu - 28)) -w 4M \
		-J -t "$DURATION" -p "$IPERF_PORT" ;;
	# Both, offered as fast as iperf3 sends: what arrives is the path's
	# datagram throughput (the loss is whatever the sender overran).
	udp_out_max) measure "$@" "$GUEST" iperf3 -c "$OUT_ADDR4" -u -b 0 -l $((mtu - 28)) -w 4M \
		-J -t "$DURATION" -p "$IPERF_PORT" ;;
	udp_in_max) measure "$@" "$OUT" iperf3 -c "$POD_ADDR4" -u -b 0 -l $((mtu - 28)) -w 4M \
		-J -t "$DURATION" -p "$IPERF_PORT" ;;
	# Small datagrams (DNS-like), as fast as iperf3 sends them: what
	# arrives, in packets per second, is the path's packet rate; each way.
	udp_64) measure "$@" "$GUEST" iperf3 -c "$OUT_ADDR4" -u -b 0 -l 64 -w 4M \
		-J -t "$DURATION" -p "$IPERF_PORT" ;;
	udp_in_64) measure "$@" "$OUT" iperf3 -c "$POD_ADDR4" -u -b 0 -l 64 -w 4M \
		-J -t "$DURATION" -p "$IPERF_PORT" ;;
	rr | crr) measure "$@" "$GUEST" "$WORK/bin/tcprr" -c "$OUT_ADDR4:$RR_PORT" -mode "$test" -t "${DURATION}s" ;;
	# RR's latency while a bulk TCP stream from the same guest fills the
	# path: one flow must not queue behind another. The stream starts
	# first and outlasts the measurement.
	rr_load)
		timeout -k 2 $((DURATION + 20)) ip netns exec "$GUEST" iperf3 -c "$OUT_ADDR4" -t $((DURATION + 2)) \
			-p "$IPERF_PORT" "${iperf[@]:5}" >"$OUT_DIR/raw/$impl-$mtu-rr_load-$n-bulk.json" 2>&1 &
		local bulk=$!
		sleep 0.5
		measure "$@" "$GUEST" "$WORK/bin/tcprr" -c "$OUT_ADDR4:$RR_PORT" -mode rr -t "${DURATION}s"
		wait "$bulk" || true
		;;
	crr_server) measure "$@" "$GUEST" "$WORK/bin/tcprr" -c "$OUT_ADDR4:$RR_PORT" -mode crr-server -t "${DURATION}s" ;;
	esac
}

# run_tests IMPL MTU OUTBOUND INBOUND: every test, RUNS times; those whose
# direction does not work (false) are n/a.
run_tests() {
	local impl=$1 mtu=$2 outbound=$3 inbound=$4 test n
	for test in $TESTS; do
		if ! impl_alive; then
			na "$impl" "$mtu" "$impl exited during an earlier test" "$test"
			continue
		fi
		if [[ " $IN_TESTS " == *" $test "* ]]; then
			[[ $inbound == true ]] || { na "$impl" "$mtu" "$INBOUND_WHY" "$test"; continue; }
		else
			[[ $outbound == true ]] || { na "$impl" "$mtu" "no outbound TCP through $impl" "$test"; continue; }
		fi
		for n in $(seq "$RUNS"); do
			run_test "$impl" "$mtu" "$test" "$n"
		done
	done
}

# idle_conns IMPL MTU: the implementation's RSS with IDLE_CONNS guest TCP
# connections open to out.
idle_conns() {
	local impl=$1 mtu=$2 file=raw/$1-$2-idleconns.json pid rss base
	base=$(proc_rss_mib "$IMPL_PID")
	spawn "$GUEST" "$OUT_DIR/$file" "$WORK/bin/idleconns" -c "$OUT_ADDR4:$IDLE_PORT" -n "$IDLE_CONNS" -hold 120s
	pid=$SPAWNED
	# Opening is bounded by what the implementation manages: 2 minutes at worst.
	if wait_for 120 grep -q opened "$OUT_DIR/$file" && impl_alive; then
		rss=$(proc_rss_mib "$IMPL_PID")
		record "$impl" "$mtu" rss_conns 1 ok "file=$file" "value=$rss" "base_mib=$base"
		log "  $IDLE_CONNS idle connections: RSS $base -> $rss MiB ($(cat "$OUT_DIR/$file"))"
	else
		record "$impl" "$mtu" rss_conns 1 fail "error=idleconns did not report within 120 s"
	fi
	stop_pid "$pid"
}

# round IMPL MTU: connect the guest with IMPL in fresh namespaces, measure,
# tear down. A failure makes the rows n/a; it never stops the run.
round() {
	local impl=$1 mtu=$2
	log "$impl, MTU $mtu"
	LEASE_S= LEASE_ERROR=
	if ! topology "$mtu"; then
		na "$impl" "$mtu" "setting up the namespaces failed" $TESTS
		return 0
	fi
	if ! "connect_$impl" "$mtu" || ! impl_alive; then
		log "  $impl did not connect the guest; its rows are n/a (log: $OUT_DIR/logs/)"
		na "$impl" "$mtu" "$impl did not connect the guest" $TESTS
		[[ $impl == masq ]] && record masq "$mtu" lease 1 fail "error=$LEASE_ERROR"
		return 0
	fi
	if [[ $impl == masq ]]; then
		record masq "$mtu" lease 1 "$([[ -n $LEASE_S ]] && echo ok || echo fail)" "value=$LEASE_S" "error=$LEASE_ERROR"
	fi
	[[ -n $IMPL_PID ]] && record "$impl" "$mtu" rss_idle 1 ok "value=$(proc_rss_mib "$IMPL_PID")"
	spawn "$GUEST" "$WORK/iperf3-guest.log" iperf3 -s -p "$IPERF_PORT"
	wait_for 10 listening "$GUEST" "$IPERF_PORT" || true

	local outbound=false inbound=false
	if run "$GUEST" "$WORK/bin/tcprr" -c "$OUT_ADDR4:$RR_PORT" -mode rr -t 0.3s >/dev/null 2>&1; then
		outbound=true
	else
		log "  no TCP from the guest to out through $impl; outbound rows n/a"
	fi
	INBOUND_WHY="no inbound port forwarding in $impl"
	if $INBOUND; then
		if run "$OUT" "$WORK/bin/tcprr" -c "$POD_ADDR4:$IPERF_PORT" -mode dial >/dev/null 2>&1; then
			inbound=true
		else
			INBOUND_WHY="no inbound TCP through $impl"
			log "  no TCP from out to the guest through $impl; inbound rows n/a"
		fi
	fi
	run_tests "$impl" "$mtu" "$outbound" "$inbound"
	if $outbound && [[ -n $IMPL_PID && " $IDLE_IMPLS " == *" $impl "* && $mtu == "${MTUS%% *}" ]] &&
		((IDLE_CONNS > 0)) && impl_alive; then
		idle_conns "$impl" "$mtu"
	fi
}

# save_logs IMPL MTU: keep the implementation's log of this round.
save_logs() {
	local f
	for f in "$WORK"/{pasta,slirp4netns,masq,dhcp}.log; do
		[[ -s $f ]] && mv "$f" "$OUT_DIR/logs/$1-$2-$(basename "$f")"
	done
	return 0
}

main() {
	trap cleanup EXIT
	trap 'exit 130' INT TERM
	step_preflight
	step_build
	step_outdir
	local impl mtu start=$SECONDS
	log "implementations: $IMPLS; MTUs: $MTUS; $DURATION s per test, $RUNS run(s)"
	for mtu in $MTUS; do
		for impl in $IMPLS; do
			round "$impl" "$mtu"
			teardown
			save_logs "$impl" "$mtu"
		done
	done
	log "measured in $((SECONDS - start)) s; results in $OUT_DIR"
	"$WORK/bin/report" -dir "$OUT_DIR"
}

main "$@"
