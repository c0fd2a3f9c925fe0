#!/usr/bin/env bash
# demo.sh: masq end to end, in network namespaces of its own, as root.
#
#   out   198.18.0.1/24 2001:db8::1/64  (the world)
#    | veth eth0 <-> eth0, MTU 9000
#   pod   198.18.0.2/24 2001:db8::2/64  (masq runs here; resolv.conf of a Kubernetes pod)
#    | tap0, made by masq inside guest, its fd held by masq
#   guest 10.0.2.2/24 by DHCP, fd10:0:2::2 by DHCPv6 and its IPv6 route by RA
#
# The guest fetches a page from the outside host (outbound, masqueraded as the
# pod), and the outside host fetches one from the guest through the pod's
# forwarded port 8080 (inbound, the guest seeing the real client).
#
# With VM=1 the guest is a QEMU virtual machine instead (a real guest kernel,
# built from Debian's packages by test/vm/build.sh and booted with TCG), on
# masq's --socket link: QEMU's stream netdev on a unix socket.
#
# Usage: sudo scripts/demo.sh
#   VM=1                    run the guest as a QEMU VM (needs qemu-system-x86)
#   MASQ=/path/to/masq      use this binary instead of building bin/masq
#   DHCP_CLIENT=udhcpc      use udhcpc (default: dhclient if installed)
# Only 198.18.0.0/15, 2001:db8::/32, 10.0.2.0/24 and fd10:0:2::/120 are used,
# inside namespaces this script makes; everything it makes is removed on exit.
#
# Each step is a function; main() lists them. To add one (say, ping the
# outside host), write step_NAME and call it from main(): run NS CMD... runs a
# command in a namespace, spawn NS CMD... starts a background one that
# cleanup ends.
set -euo pipefail

readonly MTU=9000
readonly SEARCH="default.svc.cluster.local svc.cluster.local cluster.local"
readonly NAMESERVER=198.18.0.53
readonly OUT_ADDR4=198.18.0.1 POD_ADDR4=198.18.0.2
readonly OUT_ADDR6=2001:db8::1 POD_ADDR6=2001:db8::2
readonly GATEWAY4=10.0.2.1 GATEWAY6=fd10:0:2::1 GUEST6=fd10:0:2::2
readonly TAP=tap0
readonly READY_TIMEOUT=15 # seconds for masq to log "masq ready"
readonly HTTP_PORT=8080   # the outside host's web server
readonly FWD_PORT=8080    # the pod port masq forwards to the guest's web server
readonly GUEST4=10.0.2.2

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SUFFIX=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
OUT=masq-demo-$SUFFIX-out
POD=masq-demo-$SUFFIX-pod
GUEST=masq-demo-$SUFFIX-guest
WORK= # temp dir: masq's log, the DHCP client's files
NAMESPACES=() # made so far, deleted by cleanup
PIDS=()       # background processes, ended by cleanup before the namespaces
ETC_NETNS_MADE=false

log() { printf '==> %s\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

# run NS CMD...: run CMD inside namespace NS.
run() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# spawn NS LOG CMD...: start CMD inside NS in the background, output to LOG;
# cleanup ends it. Sets SPAWNED to its pid (ip netns exec execs CMD).
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

cleanup() {
	local status=$? pid ns i
	set +e
	if [[ -n $WORK && -s $WORK/dhclient.pid ]]; then # dhclient's daemon
		pid=$(cat "$WORK/dhclient.pid")
		[[ $(cat "/proc/$pid/comm" 2>/dev/null) == dhclient ]] && stop_pid "$pid"
	fi
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		stop_pid "${PIDS[i]}"
		wait "${PIDS[i]}" 2>/dev/null
	done
	if ((status != 0)) && [[ -n $WORK && -s $WORK/masq.log ]]; then
		echo "--- masq's log:" >&2
		cat "$WORK/masq.log" >&2
	fi
	for ns in "${NAMESPACES[@]}"; do
		ip netns del "$ns"
	done
	rm -rf "/etc/netns/$POD"
	$ETC_NETNS_MADE && rmdir /etc/netns 2>/dev/null
	[[ -n $WORK ]] && rm -rf "$WORK"
	exit "$status"
}

need() { # need PROGRAM PACKAGE
	command -v "$1" >/dev/null || die "$1 not found: install the Debian package $2"
}

step_preflight() {
	need ip iproute2
	need ping iputils-ping
	need curl curl
	need busybox busybox # its httpd is the outside host's web server
	if [[ -n ${DHCP_CLIENT:-} ]]; then # dhclient or udhcpc, to choose
		need "$DHCP_CLIENT" "isc-dhcp-client (dhclient) or udhcpc"
	elif command -v dhclient >/dev/null; then
		DHCP_CLIENT=dhclient
	elif command -v udhcpc >/dev/null; then
		DHCP_CLIENT=udhcpc
	else
		die "no DHCP client: install the Debian package isc-dhcp-client (or udhcpc)"
	fi
	WORK=$(mktemp -d /tmp/masq-demo.XXXXXX)
}

step_build() {
	if [[ -n ${MASQ:-} ]]; then
		[[ -x $MASQ ]] || die "MASQ=$MASQ is not an executable"
	else
		need go golang
		log "building bin/masq"
		(cd "$ROOT" && CGO_ENABLED=0 go build -o bin/masq ./cmd/masq)
		MASQ=$ROOT/bin/masq
	fi
	MASQ=$(realpath "$MASQ")
}

step_topology() {
	log "namespaces $OUT, $POD, $GUEST (veth MTU $MTU)"
	local ns
	for ns in "$OUT" "$POD" "$GUEST"; do
		ip netns add "$ns"
		NAMESPACES+=("$ns")
		ip -n "$ns" link set lo up
	done
	ip -n "$OUT" link add eth0 mtu "$MTU" type veth peer name eth0 netns "$POD" mtu "$MTU"
	ip -n "$OUT" link set eth0 up
	ip -n "$OUT" addr add "$OUT_ADDR4/24" dev eth0
	ip -n "$OUT" addr add "$OUT_ADDR6/64" dev eth0 nodad
	ip -n "$POD" link set eth0 up
	ip -n "$POD" addr add "$POD_ADDR4/24" dev eth0
	ip -n "$POD" addr add "$POD_ADDR6/64" dev eth0 nodad
	ip -n "$POD" route add default via "$OUT_ADDR4"
	ip -n "$POD" -6 route add default via "$OUT_ADDR6"

	# ip netns exec bind-mounts /etc/netns/$POD/resolv.conf over /etc/resolv.conf.
	[[ -d /etc/netns ]] || ETC_NETNS_MADE=true
	mkdir -p "/etc/netns/$POD"
	printf 'search %s\nnameserver %s\noptions ndots:5\n' "$SEARCH" "$NAMESERVER" >"/etc/netns/$POD/resolv.conf"
}

# wait_masq_ready PID: wait until masq (PID) logs that it is ready.
wait_masq_ready() {
	local pid=$1 i
	for i in $(seq $((READY_TIMEOUT * 10))); do
		grep -q 'msg="masq ready"' "$WORK/masq.log" && return 0
		kill -0 "$pid" 2>/dev/null || die "masq exited before it was ready"
		sleep 0.1
	done
	die "masq was not ready within ${READY_TIMEOUT}s"
}

step_masq() {
	log "starting masq in $POD, $TAP in $GUEST, forwarding port $FWD_PORT to the guest"
	spawn "$POD" "$WORK/masq.log" "$MASQ" run --tap "$TAP" --guest-netns "/run/netns/$GUEST" \
		--ports "$FWD_PORT" --log-level debug
	wait_masq_ready "$SPAWNED"
}

# The DHCP client's script writes the lease to $WORK/lease as KEY=VALUE
# lines and configures the tap with ip(8); nothing outside $WORK is touched.
write_lease_script() { # write_lease_script REASON IP MASK ROUTER DNS SEARCH DOMAIN MTU HOSTNAME LEASE IFACE
	cat >"$WORK/lease-script" <<EOF
#!/bin/sh
case "$1" in
BOUND|RENEW|REBIND|REBOOT|bound|renew)
	cat >"$WORK/lease" <<LEASE
address=$2
netmask=$3
router=$4
dns=$5
search=$6
domain=$7
mtu=$8
hostname=$9
lease_time=${10}
LEASE
	[ -n "$8" ] && ip link set dev "${11}" mtu "$8"
	ip addr replace "$2/$3" dev "${11}"
	for r in $4; do ip route replace default via "\$r" dev "${11}"; break; done
	;;
PREINIT|deconfig)
	ip link set dev "${11}" up
	;;
esac
exit 0
EOF
	chmod +x "$WORK/lease-script"
}

step_dhcp() {
	log "asking for a lease with $DHCP_CLIENT in $GUEST"
	if [[ $DHCP_CLIENT == dhclient ]]; then
		write_lease_script '$reason' '$new_ip_address' '$new_subnet_mask' '$new_routers' \
			'$new_domain_name_servers' '$new_domain_search' '$new_domain_name' \
			'$new_interface_mtu' '$new_host_name' '$new_dhcp_lease_time' '$interface'
		cat >"$WORK/dhclient.conf" <<-EOF
			timeout 20;
			initial-interval 1;
			request subnet-mask, routers, domain-name-servers, domain-name, domain-search, interface-mtu, host-name;
		EOF
		# -1: try once; on success dhclient stays as a daemon, which cleanup ends.
		timeout 30 ip netns exec "$GUEST" dhclient -1 -cf "$WORK/dhclient.conf" \
			-sf "$WORK/lease-script" -lf "$WORK/dhclient.leases" -pf "$WORK/dhclient.pid" "$TAP" ||
			die "dhclient got no lease"
	else
		write_lease_script '$1' '$ip' '$subnet' '$router' '$dns' '$search' '$domain' \
			'$mtu' '$hostname' '$lease' '$interface'
		timeout 30 ip netns exec "$GUEST" udhcpc -i "$TAP" -f -n -q -t 5 -T 1 \
			-s "$WORK/lease-script" -O search -O mtu >/dev/null 2>&1 ||
			die "udhcpc got no lease"
	fi
	[[ -s $WORK/lease ]] || die "the DHCP client's script was never given a lease"
}

step_show_lease() {
	local key value
	echo
	echo "  The guest's lease (from $DHCP_CLIENT):"
	while IFS='=' read -r key value; do
		printf '    %-11s %s\n' "$key" "$value"
	done <"$WORK/lease"
	echo "  The guest's $TAP:"
	ip -n "$GUEST" -br addr show dev "$TAP" | sed 's/^/    /'
	echo
}

# IPv6 configures itself: the guest's kernel takes its default route from
# masq's Router Advertisement, and dhclient -6 its address from masq's
# DHCPv6. Without dhclient the guest is configured statically, as
# cloud-init would.
step_ipv6() {
	if ! command -v dhclient >/dev/null; then
		log "static IPv6 $GUEST6/120 in $GUEST, default via $GATEWAY6 (no dhclient for DHCPv6)"
		ip -n "$GUEST" addr add "$GUEST6/120" dev "$TAP" nodad
		ip -n "$GUEST" -6 route replace default via "$GATEWAY6" dev "$TAP"
		return
	fi
	local script=$WORK/dhclient6-script i route=
	cat >"$script" <<-'EOF'
		#!/bin/sh
		case "$reason" in BOUND6|RENEW6|REBIND6|REBOOT6)
			ip -6 addr replace "$new_ip6_address/$new_ip6_prefixlen" dev "$interface" nodad ;;
		esac
	EOF
	chmod +x "$script"
	for i in $(seq 50); do # dhclient -6 binds the link-local address, once DAD is done
		ip -n "$GUEST" -6 -o addr show dev "$TAP" scope link | grep -qv tentative && break
		sleep 0.1
	done
	run "$GUEST" dhclient -6 -1 -sf "$script" -lf "$WORK/lease6" -pf "$WORK/dhclient6.pid" "$TAP" ||
		die "dhclient -6 got no DHCPv6 lease"
	[[ -f $WORK/dhclient6.pid ]] && PIDS+=("$(cat "$WORK/dhclient6.pid")")
	for i in $(seq 100); do
		route=$(ip -n "$GUEST" -6 route show default)
		[[ -n $route ]] && break
		sleep 0.1
	done
	[[ -n $route ]] || die "no IPv6 default route from masq's Router Advertisement"
	log "IPv6 from masq: $(ip -n "$GUEST" -6 -o addr show dev "$TAP" scope global | awk '{print $4}') by DHCPv6; $route by Router Advertisement"
}

# ping_from NS ADDR: ping ADDR from NS, retrying a few times (NDP, ARP).
ping_from() {
	local ns=$1 addr=$2 i
	for i in 1 2 3 4 5; do
		if run "$ns" ping -c1 -W2 "$addr" >/dev/null; then
			log "ping $addr from $ns: ok"
			return 0
		fi
	done
	die "ping $addr from $ns failed"
}

step_ping_gateway() {
	ping_from "$GUEST" "$GATEWAY4"
	ping_from "$GUEST" "$GATEWAY6"
}

# wait_listen NS ADDR:PORT: wait up to 5 s for a TCP listener on
# ADDR:PORT (an IPv6 ADDR in brackets) in NS.
wait_listen() {
	local ns=$1 addr=$2 i
	for i in $(seq 50); do
		[[ -n $(ip netns exec "$ns" ss -Hltn src "$addr") ]] && return 0
		sleep 0.1
	done
	die "nothing listens on $addr in $ns"
}

# write_whoami DIR: a web root whose /cgi-bin/whoami says which address
# the request came from.
write_whoami() {
	local www=$1
	mkdir -p "$www/cgi-bin"
	cat >"$www/cgi-bin/whoami" <<-'EOF'
		#!/bin/sh
		printf 'Content-Type: text/plain\r\n\r\n'
		echo "$REMOTE_ADDR"
	EOF
	chmod +x "$www/cgi-bin/whoami"
}

# fetch_whoami NS URL WANT WHO: curl URL from NS and check that the server
# saw the request come from WANT; WHO names the server in the log line.
fetch_whoami() {
	local ns=$1 url=$2 want=$3 who=$4 seen
	seen=$(run "$ns" curl -sS -g --fail --max-time 10 "$url") || die "curl $url from $ns failed"
	seen=$(tr -d '[] \r\n' <<<"$seen")
	log "curl $url from $ns: $who saw the request come from $seen"
	[[ $seen == "$want" ]] || die "$who saw $seen, not $want"
}

# The outside host runs a web server (busybox httpd) whose page says which
# address the request came from; the guest fetches it over IPv4 and IPv6
# and the address shown must be the pod's: masq's sockets, not the guest's.
step_fetch_outside() {
	local www=$WORK/www-out addr
	write_whoami "$www"
	for addr in "$OUT_ADDR4" "[$OUT_ADDR6]"; do
		spawn "$OUT" "$WORK/httpd-${#PIDS[@]}.log" busybox httpd -f -p "$addr:$HTTP_PORT" -h "$www"
		wait_listen "$OUT" "$addr:$HTTP_PORT"
	done
	log "web server on $OUT_ADDR4 and $OUT_ADDR6 port $HTTP_PORT in $OUT"
	fetch_whoami "$GUEST" "http://$OUT_ADDR4:$HTTP_PORT/cgi-bin/whoami" "$POD_ADDR4" "the outside host"
	fetch_whoami "$GUEST" "http://[$OUT_ADDR6]:$HTTP_PORT/cgi-bin/whoami" "$POD_ADDR6" "the outside host"
}

# The guest runs the same web server on port $FWD_PORT; the outside host
# fetches it from the pod's address (masq forwards the port), over IPv4 and
# IPv6, and the address the guest shows must be the outside host's own.
step_fetch_inbound() {
	local www=$WORK/www-guest addr
	write_whoami "$www"
	for addr in "$GUEST4" "[$GUEST6]"; do
		spawn "$GUEST" "$WORK/httpd-${#PIDS[@]}.log" busybox httpd -f -p "$addr:$FWD_PORT" -h "$www"
		wait_listen "$GUEST" "$addr:$FWD_PORT"
	done
	log "web server on $GUEST4 and $GUEST6 port $FWD_PORT in $GUEST, forwarded from the pod"
	fetch_whoami "$OUT" "http://$POD_ADDR4:$FWD_PORT/cgi-bin/whoami" "$OUT_ADDR4" "the guest"
	fetch_whoami "$OUT" "http://[$POD_ADDR6]:$FWD_PORT/cgi-bin/whoami" "$OUT_ADDR6" "the guest"
}

# The VM variant: masq listens on a unix socket, QEMU's stream netdev
# connects, and the guest reports on its serial console (lines "VM ...").
step_vm_guest() {
	need qemu-system-x86_64 qemu-system-x86
	log "building the QEMU test guest (cached after the first time)"
	VM_DIR=$(bash "$ROOT/test/vm/build.sh" | tail -n 1)
}

step_masq_vm() {
	log "starting masq in $POD on the socket $WORK/vm.sock, forwarding port $FWD_PORT to the guest"
	spawn "$POD" "$WORK/masq.log" "$MASQ" run --socket "$WORK/vm.sock" --ports "$FWD_PORT" --log-level debug
	wait_masq_ready "$SPAWNED"
}

# wait_vm WHAT: wait up to 60 s for the console line "VM WHAT..." and print
# it from WHAT on.
wait_vm() {
	local i line
	for i in $(seq 600); do
		line=$(tr -d '\r' <"$WORK/vm.log" | grep -o "VM $1.*" | head -n 1 || true)
		[[ -n $line ]] && { echo "${line#VM }"; return 0; }
		kill -0 "$VM_PID" 2>/dev/null || die "the VM stopped without printing 'VM $1' (console: $WORK/vm.log)"
		sleep 0.1
	done
	die "the VM did not print 'VM $1' within 60s (console: $WORK/vm.log)"
}

step_vm() {
	local www=$WORK/www-out got
	write_whoami "$www"
	spawn "$OUT" "$WORK/httpd-out.log" busybox httpd -f -p "$OUT_ADDR4:$HTTP_PORT" -h "$www"
	wait_listen "$OUT" "$OUT_ADDR4:$HTTP_PORT"
	log "booting the VM (QEMU, TCG): -netdev stream to $WORK/vm.sock"
	spawn "$POD" "$WORK/vm.log" qemu-system-x86_64 -accel tcg -cpu qemu64 -m 256 \
		-nodefaults -no-user-config -display none -serial stdio -no-reboot \
		-bios /usr/share/qemu/qboot.rom -kernel "$VM_DIR/vmlinux" -initrd "$VM_DIR/initrd" \
		-append "console=ttyS0 quiet panic=1 masq.show=http://$OUT_ADDR4:$HTTP_PORT/cgi-bin/whoami masq.serve=$FWD_PORT masq.hold=60" \
		-device virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56,romfile= \
		-netdev "stream,id=n0,server=off,addr.type=unix,addr.path=$WORK/vm.sock"
	VM_PID=$SPAWNED
	log "the VM's lease: $(wait_vm lease)"
	got=$(wait_vm got)
	log "the VM fetched the outside host's page, which saw the request come from: ${got#got }"
	[[ ${got#got } == "$POD_ADDR4" ]] || die "the outside host saw ${got#got }, not the pod's $POD_ADDR4"
	wait_vm serving >/dev/null
	got=$(run "$OUT" curl -sS --fail --max-time 10 "http://$POD_ADDR4:$FWD_PORT/") || die "curl of the VM's page through the pod failed"
	log "the outside host fetched the VM's page through the pod's port $FWD_PORT: $got"
}

main() {
	((EUID == 0)) || die "must run as root (it creates network namespaces and a tap device); try: sudo $0"
	trap cleanup EXIT
	if [[ -n ${VM:-} ]]; then
		step_preflight
		step_vm_guest
		step_build
		step_topology
		step_masq_vm
		step_vm
		log "demo done; cleaning up"
		return
	fi
	step_preflight
	step_build
	step_topology
	step_masq
	step_dhcp
	step_show_lease
	step_ipv6
	step_ping_gateway
	step_fetch_outside
	step_fetch_inbound
	# Next steps go here.
	log "demo done; cleaning up"
}

main "$@"
