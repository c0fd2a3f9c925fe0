#!/usr/bin/env bash
# bench/soak.sh: `make soak`, as root, not in CI. masq serves a guest
# namespace for SOAK_SECONDS (30 minutes) of mixed traffic, all at once and
# over and over: bulk TCP both ways, TCP request/response and connection
# churn, DNS queries from fresh ports (a new UDP flow each), a UDP stream,
# and inbound TCP through a forwarded port. masq's RSS, open descriptors
# and threads are sampled every SOAK_SAMPLE seconds into soak.csv; soakplot
# draws soak.png and fails the run unless the last SOAK_FLAT_SECONDS (20
# minutes) stay within SOAK_TOLERANCE (10 %) of their mean.
#
#   out   198.18.0.1/24 2001:db8::1/64  iperf3, tcprr, netpeer dns servers
#    | veth
#   pod   198.18.0.2/24 2001:db8::2/64  masq --tap (all ports forwarded)
#    | tap0
#   guest 10.0.2.2/24                   the clients, an iperf3 server (inbound, port 1202)
#
# Knobs: SOAK_SECONDS=1800 SOAK_SAMPLE=10 SOAK_FLAT_SECONDS=1200
# SOAK_TOLERANCE=0.10 BULK_RATE=200M (iperf3 -b of each bulk stream; the
# soak looks for leaks, not speed) MASQ=bin/masq OUT_DIR=bench/out/soak.
# Only 198.18.0.0/15, 2001:db8::/32 and 10.0.2.0/24, in namespaces it makes
# and removes.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SOAK_SECONDS=${SOAK_SECONDS:-1800}
SOAK_SAMPLE=${SOAK_SAMPLE:-10}
SOAK_FLAT_SECONDS=${SOAK_FLAT_SECONDS:-1200}
SOAK_TOLERANCE=${SOAK_TOLERANCE:-0.10}
BULK_RATE=${BULK_RATE:-200M}
MASQ=${MASQ:-$ROOT/bin/masq}
OUT_DIR=${OUT_DIR:-$ROOT/bench/out/soak}

readonly OUT4=198.18.0.1 POD4=198.18.0.2 OUT6=2001:db8::1 POD6=2001:db8::2
readonly GW4=10.0.2.1 GUEST4=10.0.2.2 GW6=fd10:0:2::1 GUEST6=fd10:0:2::2

SUFFIX=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
OUT=soak-$SUFFIX-out POD=soak-$SUFFIX-pod GUEST=soak-$SUFFIX-guest
WORK=$(mktemp -d)
PIDS=()
MASQ_PID=

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'soak: %s\n' "$*" >&2; exit 1; }

cleanup() {
	local status=$? i
	set +e
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		kill -TERM "${PIDS[i]}" 2>/dev/null
	done
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		timeout 10 tail --pid="${PIDS[i]}" -f /dev/null 2>/dev/null || kill -KILL "${PIDS[i]}" 2>/dev/null
	done
	for ns in "$GUEST" "$POD" "$OUT"; do ip netns del "$ns" 2>/dev/null; done
	rm -rf "$WORK"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# spawn NS LOG CMD...: CMD in NS in the background; cleanup ends it.
spawn() {
	local ns=$1 out=$2; shift 2
	ip netns exec "$ns" "$@" >"$out" 2>&1 &
	PIDS+=("$!")
}

# loop NAME NS CMD...: run CMD in NS again and again until the soak ends,
# each run bounded to 2 minutes; counts runs and failures in
# $WORK/NAME.count.
loop() {
	local name=$1 ns=$2; shift 2
	(
		ok=0 failed=0
		while ((SECONDS < END)); do
			if timeout -k 2 120 ip netns exec "$ns" "$@" >>"$WORK/$name.log" 2>&1; then ok=$((ok + 1)); else failed=$((failed + 1)); fi
			echo "$ok $failed" >"$WORK/$name.count"
			sleep 1
		done
	) &
	PIDS+=("$!")
}

[[ $EUID -eq 0 ]] || die "run as root (namespaces, a tap)"
for p in ip iperf3 go; do command -v "$p" >/dev/null || die "needs $p"; done
[[ -x $MASQ ]] || die "no masq binary at $MASQ (make build)"
mkdir -p "$OUT_DIR"

log "building the tools"
(cd "$ROOT/bench" && go build -o "$WORK/tcprr" ./cmd/tcprr && go build -o "$WORK/soakplot" ./cmd/soakplot)
(cd "$ROOT" && go build -o "$WORK/netpeer" ./e2e/internal/netpeer)

log "namespaces $OUT, $POD, $GUEST"
for ns in "$OUT" "$POD" "$GUEST"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip -n "$OUT" link add eth0 type veth peer name eth0 netns "$POD"
ip -n "$OUT" link set eth0 up; ip -n "$POD" link set eth0 up
ip -n "$OUT" addr add $OUT4/24 dev eth0; ip -n "$OUT" addr add $OUT6/64 dev eth0 nodad
ip -n "$POD" addr add $POD4/24 dev eth0; ip -n "$POD" addr add $POD6/64 dev eth0 nodad
ip -n "$POD" route add default via $OUT4; ip -n "$POD" -6 route add default via $OUT6

spawn "$POD" "$OUT_DIR/masq.log" "$MASQ" run --guest-netns "/run/netns/$GUEST" --tap tap0
MASQ_PID=${PIDS[-1]}
for _ in $(seq 150); do grep -q 'msg="masq ready"' "$OUT_DIR/masq.log" && break; sleep 0.1; done
grep -q 'msg="masq ready"' "$OUT_DIR/masq.log" || die "masq not ready: $(tail -5 "$OUT_DIR/masq.log")"
ip -n "$GUEST" addr add $GUEST4/24 dev tap0
ip -n "$GUEST" addr add $GUEST6/120 dev tap0 nodad
ip -n "$GUEST" route add default via $GW4
ip -n "$GUEST" -6 route replace default via $GW6 dev tap0

# One iperf3 server per loop: a server runs one test at a time. The
# guest's inbound port is low (1202): with a small RLIMIT_NOFILE masq
# forwards the lowest ports only.
spawn "$OUT" "$WORK/iperf-out1.log" iperf3 -s -p 5201
spawn "$OUT" "$WORK/iperf-out2.log" iperf3 -s -p 5203
spawn "$OUT" "$WORK/iperf-out3.log" iperf3 -s -p 5204
spawn "$OUT" "$WORK/tcprr-server.log" "$WORK/tcprr" -s -l :7000
spawn "$OUT" "$WORK/dns.log" "$WORK/netpeer" dns -listen $OUT4:53
spawn "$GUEST" "$WORK/iperf-guest.log" iperf3 -s -p 1202
sleep 1

START=$SECONDS
END=$((SECONDS + SOAK_SECONDS))
log "mixed traffic for ${SOAK_SECONDS}s"
loop bulk-out "$GUEST" iperf3 -c $OUT4 -p 5201 -t 20 -b "$BULK_RATE"
loop bulk-in "$GUEST" iperf3 -c $OUT6 -p 5204 -t 20 -b "$BULK_RATE" -R
loop rr "$GUEST" "$WORK/tcprr" -c $OUT4:7000 -mode rr -t 10s
loop crr "$GUEST" "$WORK/tcprr" -c $OUT4:7000 -mode crr -t 10s
loop dns "$GUEST" bash -c "for i in \$(seq 50); do $WORK/netpeer dnsquery -to $OUT4:53 -timeout 2s || exit 1; done"
loop udp "$GUEST" iperf3 -u -c $OUT4 -p 5203 -t 10 -b 50M
loop inbound "$OUT" iperf3 -c $POD4 -p 1202 -t 10 -b 200M

CSV=$OUT_DIR/soak.csv
echo "seconds,rss_kib,fds,threads" >"$CSV"
while ((SECONDS < END)); do
	kill -0 "$MASQ_PID" 2>/dev/null || die "masq exited: $(tail -5 "$OUT_DIR/masq.log")"
	rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$MASQ_PID/status")
	threads=$(awk '/^Threads:/ { print $2 }' "/proc/$MASQ_PID/status")
	fds=$(find "/proc/$MASQ_PID/fd" -mindepth 1 -maxdepth 1 | wc -l)
	echo "$((SECONDS - START)),$rss,$fds,$threads" >>"$CSV"
	sleep "$SOAK_SAMPLE"
done
for c in "$WORK"/*.count; do
	read -r ok failed <"$c"
	log "$(basename "$c" .count): $ok runs, $failed failed"
done
grep 'msg="flows"' "$OUT_DIR/masq.log" | tail -1 >&2 || true
"$WORK/soakplot" -csv "$CSV" -png "$OUT_DIR/soak.png" -flat-seconds "$SOAK_FLAT_SECONDS" -tolerance "$SOAK_TOLERANCE"
