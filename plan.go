package masq

import (
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"strconv"

	"github.com/masqnet/masq/dhcp"
	"github.com/masqnet/masq/internal/sandbox"
	"github.com/masqnet/masq/nat"
	"github.com/masqnet/masq/ports"
	"github.com/masqnet/masq/stack"
)

// runPlan is a validated Config resolved against the system: every value
// Run's parts need, computed once before anything starts.
type runPlan struct {
	mtu      uint32
	gateway4 netip.Prefix
	gateway6 netip.Prefix
	dhcp     dhcp.Config
	dhcp6    *dhcp.Config6  // nil: IPv6 off
	ra       *dhcp.RAConfig // nil: IPv6 off or --no-ra
	policy   nat.Policy
	ports    *ports.Set       // nil: every port
	except   ports.Set        // never forwarded: the guest link's TCP port
	sandbox  *sandbox.Options // nil: the process is not confined
}

// plan resolves cfg's defaults from the pod (interface MTU, host name,
// resolv.conf) and checks what only the system can tell (the namespace
// exists). It logs what it chose.
func plan(cfg Config, log *slog.Logger) (runPlan, error) {
	if cfg.GuestNetns != "" {
		if _, err := os.Stat(cfg.GuestNetns); err != nil {
			return runPlan{}, fmt.Errorf("--guest-netns %q: %w", cfg.GuestNetns, err)
		}
	}
	mtu, err := linkMTU(cfg, log)
	if err != nil {
		return runPlan{}, err
	}
	p := runPlan{
		mtu:      mtu,
		gateway4: netip.PrefixFrom(gateway(cfg.VMCIDR), cfg.VMCIDR.Bits()),
		ports:    cfg.Ports,
	}
	if p.except, err = ownPorts(cfg); err != nil {
		return runPlan{}, err
	}
	if cfg.VMIPv6CIDR.IsValid() {
		p.gateway6 = netip.PrefixFrom(gateway(cfg.VMIPv6CIDR), cfg.VMIPv6CIDR.Bits())
	}
	p.sandbox = sandboxOptions(cfg)
	rc := readResolvConf(cfg.ResolvConf, log)
	offer, forward := dnsPlan(gateway(cfg.VMCIDR), rc.Nameservers, log)
	p.dhcp = dhcpConfig(cfg, mtu, offer, rc.Search)
	p.policy = nat.Policy{
		Guest4: guest(cfg.VMCIDR), Net4: cfg.VMCIDR,
		AllowGatewayToPod: cfg.AllowGatewayToPod,
		DNS:               forward,
	}
	if cfg.VMIPv6CIDR.IsValid() {
		p.policy.Guest6, p.policy.Net6 = guest(cfg.VMIPv6CIDR), cfg.VMIPv6CIDR
		p.dhcp6, p.ra = ipv6Config(cfg, mtu, dnsPlan6(p.gateway6.Addr(), rc.Nameservers, forward.IsValid()), rc.Search)
	}
	return p, nil
}

// sandboxOptions is how far Run confines the process; nil unless
// cfg.Confine.
func sandboxOptions(cfg Config) *sandbox.Options {
	if !cfg.Confine {
		return nil
	}
	o := &sandbox.Options{NoSeccomp: cfg.NoSeccomp}
	if cfg.SeccompCrash {
		o.Deny = sandbox.DenyCrash
	}
	return o
}

// dnsPlan6 decides which nameservers DHCPv6 and the Router Advertisements
// offer: the gateway's IPv6 address when dnsPlan sends the guest's DNS
// through the gateway (the pod's resolvers are on loopback; masq forwards
// gateway:53 of either family), else the pod's IPv6 nameservers, if any.
func dnsPlan6(gw6 netip.Addr, nameservers []netip.Addr, viaGateway bool) []netip.Addr {
	if viaGateway {
		return []netip.Addr{gw6}
	}
	var offer []netip.Addr
	for _, ns := range nameservers {
		if ns.Is6() && !ns.Is4In6() && !ns.IsLoopback() {
			offer = append(offer, ns)
		}
	}
	return offer
}

// ipv6Config builds the DHCPv6 server's and the Router Advertisements'
// configurations; the latter is nil under --no-ra.
func ipv6Config(cfg Config, mtu uint32, dns []netip.Addr, search []string) (*dhcp.Config6, *dhcp.RAConfig) {
	mac := net.HardwareAddr(stack.GatewayMAC)
	d6 := &dhcp.Config6{ServerMAC: mac, GuestIP: guest(cfg.VMIPv6CIDR), Network: cfg.VMIPv6CIDR,
		DNS: dns, Search: search}
	if cfg.NoRA {
		return d6, nil
	}
	return d6, &dhcp.RAConfig{MAC: mac, Prefix: cfg.VMIPv6CIDR, MTU: mtu, DNS: dns, Search: search,
		Interval: cfg.RAInterval}
}

// ownPorts are the TCP ports masq itself listens on, which it so never
// forwards: a --socket tcp:IP:PORT's and --metrics's.
func ownPorts(cfg Config) (ports.Set, error) {
	var own []ports.Range
	add := func(port uint16) {
		if port != 0 && !ports.Reserved(port) { // 0 or 49152-3: never forwarded anyway
			own = append(own, ports.Range{Proto: ports.TCP, First: port, Last: port})
		}
	}
	if a := cfg.Socket; !a.IsZero() && a.IsTCP() {
		add(a.TCP.Port())
	}
	if cfg.Metrics != "" {
		_, p, err := net.SplitHostPort(cfg.Metrics)
		if err != nil {
			return ports.Set{}, fmt.Errorf("--metrics %q: %w", cfg.Metrics, err)
		}
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil {
			return ports.Set{}, fmt.Errorf("--metrics %q: the port must be a number, 0 to 65535", cfg.Metrics)
		}
		add(uint16(n))
	}
	return ports.New(own...)
}

// linkMTU is cfg.MTU, or the pod interface's MTU capped at MaxMTU.
func linkMTU(cfg Config, log *slog.Logger) (uint32, error) {
	if cfg.MTU != 0 && cfg.PodInterface == "" {
		return cfg.MTU, nil
	}
	pod, err := findPodLink(cfg.PodInterface)
	if err != nil {
		return 0, err
	}
	if cfg.MTU != 0 {
		return cfg.MTU, nil
	}
	mtu := min(uint32(pod.mtu), MaxMTU)
	if mtu < MinMTU || (cfg.VMIPv6CIDR.IsValid() && mtu < minIPv6MTU) {
		return 0, fmt.Errorf("pod interface %s has MTU %d, too small for the guest; set --mtu", pod.name, pod.mtu)
	}
	log.Info("guest MTU from pod interface", "interface", pod.name, "pod_mtu", pod.mtu, "mtu", mtu)
	return mtu, nil
}

// readResolvConf reads the pod's resolver configuration. A missing or
// unreadable file leaves the guest without DNS options, with a warning.
func readResolvConf(path string, log *slog.Logger) dhcp.ResolvConf {
	rc, err := dhcp.ReadResolvConf(path)
	if err != nil {
		log.Warn("no DNS for the guest", "err", err)
		return dhcp.ResolvConf{}
	}
	for _, w := range rc.Warnings {
		log.Warn("resolv.conf entry skipped", "path", path, "reason", w)
	}
	return rc
}

// dnsPlan decides which nameservers the guest is offered (DHCPv4 carries
// IPv4 ones only) and whether gateway:53 forwards to the pod's resolver.
// The pod's nameservers are offered as they are; when all of them are on
// the pod's loopback (systemd-resolved's 127.0.0.53 on a host), the guest
// could not reach them, so it is offered the gateway, and masq forwards
// DNS arriving there to the first of them.
func dnsPlan(gw netip.Addr, nameservers []netip.Addr, log *slog.Logger) (offer []netip.Addr, forward netip.AddrPort) {
	var loopback []netip.Addr
	for _, ns := range nameservers {
		switch {
		case ns.IsLoopback():
			loopback = append(loopback, ns)
		case ns.Is4():
			offer = append(offer, ns)
		}
	}
	// All on loopback, or no IPv4 one to offer besides (DHCPv4 carries
	// IPv4 only): the gateway it is.
	if len(loopback) > 0 && (len(loopback) == len(nameservers) || len(offer) == 0) {
		forward = netip.AddrPortFrom(loopback[0], nat.DNSPort)
		log.Info("pod resolver is on loopback: guest DNS goes through the gateway", "resolver", forward, "gateway", gw)
		return []netip.Addr{gw}, forward
	}
	if len(loopback) > 0 {
		log.Warn("loopback nameservers not offered to the guest", "nameservers", loopback)
	}
	return offer, netip.AddrPort{}
}

// dhcpConfig builds the DHCP server's configuration.
func dhcpConfig(cfg Config, mtu uint32, dns []netip.Addr, search []string) dhcp.Config {
	return dhcp.Config{
		ServerIP:   gateway(cfg.VMCIDR),
		GuestIP:    guest(cfg.VMCIDR),
		Network:    cfg.VMCIDR,
		DNS:        dns,
		Search:     search,
		DomainName: dhcp.LongestDomain(search),
		Hostname:   hostname(cfg.Hostname),
		MTU:        uint16(min(mtu, math.MaxUint16)), // option 26 is 16 bits; MaxMTU fits
		GuestMAC:   cfg.GuestMAC,
	}
}
