package dhcp

import (
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/rfc1035label"
)

// DefaultLeaseTime is the lease given when Config.LeaseTime is zero. A day
// rather than KubeVirt's 999 days: the answer is stateless, so renewals cost
// nothing and cannot fail, and a guest that renews every 12 hours picks up
// what a restarted masq now answers (new MTU, new resolv.conf). Set
// Config.LeaseTime to 999*24*time.Hour to match KubeVirt exactly.
const DefaultLeaseTime = 24 * time.Hour

// maxLeaseTime is the largest lease option 51 can carry: 0xffffffff
// seconds, which RFC 2132 §9.2 defines as infinite.
const maxLeaseTime = math.MaxUint32 * time.Second

// MinMTU is the smallest MTU option 26 may carry (RFC 2132 §5.1): IPv4's
// minimum datagram size (RFC 791), which every IPv4 link must pass whole.
// It is the one definition of that floor: masq.Config.Validate bounds the
// guest's link MTU with it, since that MTU reaches the guest in option 26.
const MinMTU = 68

// Config is what the DHCPv4 server tells the guest. It is built from netip
// values and validated by the caller (masq.Config.Validate); NewServer only
// rejects what it cannot encode. It is read once by NewServer and not kept.
type Config struct {
	// ServerIP is the gateway: the server identifier (option 54), the
	// router (option 3) and siaddr. IPv4, inside Network.
	ServerIP netip.Addr

	// GuestIP is the one address ever offered. IPv4, inside Network.
	GuestIP netip.Addr

	// Network is the guest's subnet: it gives the subnet mask (option 1)
	// and the broadcast address (option 28).
	Network netip.Prefix

	// DNS are the name servers (option 6), IPv4 only: filter IPv6 ones out
	// first. Empty means option 6 is not sent.
	DNS []netip.Addr

	// Search is the domain search list (option 119), each name in dotted
	// form without a trailing dot. Empty means option 119 is not sent.
	Search []string

	// DomainName is option 15 (usually LongestDomain(Search)); empty means
	// it is not sent.
	DomainName string

	// Hostname is option 12; empty means it is not sent.
	Hostname string

	// MTU is the guest's interface MTU (option 26), at least MinMTU. It is sent
	// whether or not the client asks: busybox udhcpc does not ask.
	MTU uint16

	// LeaseTime is option 51. Zero means DefaultLeaseTime; anything above
	// 0xffffffff seconds is sent as 0xffffffff, an infinite lease.
	LeaseTime time.Duration

	// GuestMAC, when set, is the only client hardware address answered;
	// nil answers any client.
	GuestMAC net.HardwareAddr
}

// optionSets are the options of each kind of reply, built once by compile.
// The message type (option 53) is added per reply.
type optionSets struct {
	lease  dhcpv4.Options // OFFER and ACK of a lease
	inform dhcpv4.Options // ACK to an INFORM: the lease set without option 51
	nak    dhcpv4.Options // NAK: the server identifier only
}

// compile checks cfg and builds the option sets every reply is copied from.
func compile(cfg Config) (optionSets, error) {
	if err := checkAddrs(cfg); err != nil {
		return optionSets{}, err
	}
	if cfg.MTU < MinMTU {
		return optionSets{}, fmt.Errorf("MTU %d: less than %d", cfg.MTU, MinMTU)
	}
	lease, err := leaseTime(cfg.LeaseTime)
	if err != nil {
		return optionSets{}, err
	}
	common, err := commonOptions(cfg)
	if err != nil {
		return optionSets{}, err
	}
	sets := optionSets{
		lease:  common,
		inform: clone(common),
		nak:    dhcpv4.OptionsFromList(dhcpv4.OptServerIdentifier(cfg.ServerIP.AsSlice())),
	}
	sets.lease.Update(dhcpv4.OptIPAddressLeaseTime(lease))
	return sets, nil
}

// checkAddrs checks that the addresses are IPv4 and the two hosts are
// distinct members of Network.
func checkAddrs(cfg Config) error {
	if !cfg.Network.IsValid() || !cfg.Network.Addr().Is4() {
		return fmt.Errorf("network %v: not an IPv4 prefix", cfg.Network)
	}
	for _, a := range []struct {
		name string
		ip   netip.Addr
	}{{"server", cfg.ServerIP}, {"guest", cfg.GuestIP}} {
		if !a.ip.Is4() || !cfg.Network.Contains(a.ip) {
			return fmt.Errorf("%s address %v: not an IPv4 address in %v", a.name, a.ip, cfg.Network)
		}
	}
	if cfg.ServerIP == cfg.GuestIP {
		return fmt.Errorf("server and guest share the address %v", cfg.ServerIP)
	}
	for _, ns := range cfg.DNS {
		if !ns.Is4() {
			return fmt.Errorf("DNS server %v: not IPv4", ns)
		}
	}
	return nil
}

// leaseTime applies the default and the ceiling to d.
func leaseTime(d time.Duration) (time.Duration, error) {
	switch {
	case d == 0:
		return DefaultLeaseTime, nil
	case d < time.Second:
		return 0, fmt.Errorf("lease time %v: shorter than a second", d)
	case d > maxLeaseTime:
		return maxLeaseTime, nil
	}
	return d, nil
}

// commonOptions builds the options every positive answer carries.
func commonOptions(cfg Config) (dhcpv4.Options, error) {
	bits := cfg.Network.Bits()
	opts := dhcpv4.OptionsFromList(
		dhcpv4.OptServerIdentifier(cfg.ServerIP.AsSlice()),
		dhcpv4.OptSubnetMask(net.CIDRMask(bits, 32)),
		dhcpv4.OptRouter(cfg.ServerIP.AsSlice()),
		dhcpv4.OptBroadcastAddress(broadcastAddr(cfg.Network).AsSlice()),
		dhcpv4.OptGeneric(dhcpv4.OptionInterfaceMTU, binary.BigEndian.AppendUint16(nil, cfg.MTU)),
	)
	if len(cfg.DNS) > 0 {
		ips := make([]net.IP, len(cfg.DNS))
		for i, ns := range cfg.DNS {
			ips[i] = ns.AsSlice()
		}
		opts.Update(dhcpv4.OptDNS(ips...))
	}
	if len(cfg.Search) > 0 {
		search, err := searchOption(cfg.Search)
		if err != nil {
			return nil, err
		}
		opts.Update(search)
	}
	if cfg.DomainName != "" {
		opts.Update(dhcpv4.OptDomainName(cfg.DomainName))
	}
	if cfg.Hostname != "" {
		opts.Update(dhcpv4.OptHostName(cfg.Hostname))
	}
	return opts, nil
}

// searchOption checks the domains and encodes them as option 119.
func searchOption(domains []string) (dhcpv4.Option, error) {
	for _, d := range domains {
		if err := checkDomain(d); err != nil {
			return dhcpv4.Option{}, fmt.Errorf("search domain %q: %w", d, err)
		}
	}
	labels, err := rfc1035label.FromBytes(encodeSearch(domains))
	if err != nil {
		// Unreachable: encodeSearch only writes what the decoder reads.
		return dhcpv4.Option{}, fmt.Errorf("encoding the search list: %w", err)
	}
	return dhcpv4.OptDomainSearch(labels), nil
}

// broadcastAddr returns the directed broadcast address of p: its last
// address.
func broadcastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := ^uint32(0) >> p.Bits()
	binary.BigEndian.PutUint32(a[:], binary.BigEndian.Uint32(a[:])|host)
	return netip.AddrFrom4(a)
}

// clone returns a copy of o whose map, not whose values, is new. Replies
// share the option bytes of the sets and never modify them in place.
func clone(o dhcpv4.Options) dhcpv4.Options {
	return maps.Clone(o)
}
