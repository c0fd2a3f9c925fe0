package dhcp

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

// Router Advertisement constants (RFC 4861 §4.2, §4.6, §6.2.1; RFC 8106).
const (
	// RAHopLimit is the IPv6 hop limit every Router Advertisement is sent
	// with: receivers drop one with any other (RFC 4861 §6.1.2).
	RAHopLimit = 255

	// DefaultRAInterval is MaxRtrAdvInterval when RAConfig.Interval is
	// zero: RFC 4861 §6.2.1's default of 600 s is made shorter so that a
	// guest that missed every advertisement (and sends no solicitation)
	// learns its router within minutes.
	DefaultRAInterval = 200 * time.Second

	// DefaultRouterLifetime is AdvDefaultLifetime when
	// RAConfig.RouterLifetime is zero: 1800 s, RFC 4861's 3 ×
	// MaxRtrAdvInterval for the RFC's default interval, and far longer
	// than ours, so a guest keeps its default route across a masq
	// restart.
	DefaultRouterLifetime = 1800 * time.Second

	// maxRouterLifetime is the largest router lifetime (RFC 4861 §6.2.1:
	// 9000 s).
	maxRouterLifetime = 9000 * time.Second

	// Prefix lifetimes: RFC 4861 §6.2.1's AdvValidLifetime and
	// AdvPreferredLifetime defaults (30 and 7 days). The prefix is on-link
	// only (A=0); the address itself comes from DHCPv6.
	prefixValidLifetime     = 30 * 24 * time.Hour
	prefixPreferredLifetime = 7 * 24 * time.Hour

	icmpRouterAdvert = 134

	// Neighbor Discovery option types.
	ndOptSourceLinkAddr = 1
	ndOptPrefixInfo     = 3
	ndOptMTU            = 5
	ndOptRDNSS          = 25 // RFC 8106 §5.1
	ndOptDNSSL          = 31 // RFC 8106 §5.2

	raFlagManaged = 0x80 // M: addresses by DHCPv6
	raFlagOther   = 0x40 // O: other configuration by DHCPv6
	pioFlagOnLink = 0x80 // L
)

// RAConfig is what the gateway's Router Advertisements tell the guest.
// Validated by the caller; BuildRA rejects only what it cannot encode.
type RAConfig struct {
	// MAC is the gateway's link address, sent as the source link-layer
	// address option so the guest need not resolve the router.
	MAC net.HardwareAddr

	// Prefix is the guest's on-link IPv6 network (--vm-ipv6-cidr).
	Prefix netip.Prefix

	// MTU is the link MTU (option 5), at least 1280.
	MTU uint32

	// DNS are the recursive name servers (RDNSS), IPv6 only; empty means
	// no RDNSS option.
	DNS []netip.Addr

	// Search are the search domains (DNSSL), dotted without a trailing
	// dot; empty means no DNSSL option.
	Search []string

	// Interval is MaxRtrAdvInterval; zero means DefaultRAInterval.
	Interval time.Duration

	// RouterLifetime is AdvDefaultLifetime; zero means
	// DefaultRouterLifetime; at most 9000 s.
	RouterLifetime time.Duration
}

// BuildRA returns the ICMPv6 Router Advertisement (header and options,
// checksum zero: the sender fills it in) that cfg describes, with the
// Managed and Other flags set: the guest takes its address and DNS from
// DHCPv6 and its default route from this advertisement. It is a pure
// function of cfg.
func BuildRA(cfg RAConfig) ([]byte, error) {
	if len(cfg.MAC) != 6 {
		return nil, fmt.Errorf("router MAC %v: not 6 bytes", cfg.MAC)
	}
	if !cfg.Prefix.IsValid() || !cfg.Prefix.Addr().Is6() || cfg.Prefix.Addr().Is4In6() {
		return nil, fmt.Errorf("prefix %v: not an IPv6 prefix", cfg.Prefix)
	}
	if cfg.MTU < 1280 {
		return nil, fmt.Errorf("MTU %d: less than IPv6's 1280", cfg.MTU)
	}
	interval := cmp0(cfg.Interval, DefaultRAInterval)
	lifetime := cmp0(cfg.RouterLifetime, DefaultRouterLifetime)
	if lifetime > maxRouterLifetime || lifetime < time.Second {
		return nil, fmt.Errorf("router lifetime %v: want 1s..%v", lifetime, maxRouterLifetime)
	}
	msg := []byte{icmpRouterAdvert, 0, 0, 0, 64, raFlagManaged | raFlagOther}
	msg = binary.BigEndian.AppendUint16(msg, uint16(lifetime/time.Second))
	msg = append(msg, make([]byte, 8)...) // reachable time, retrans timer: unspecified
	msg = append(msg, ndOptSourceLinkAddr, 1)
	msg = append(msg, cfg.MAC...)
	msg = append(msg, ndOptMTU, 1, 0, 0)
	msg = binary.BigEndian.AppendUint32(msg, cfg.MTU)
	msg = appendPrefixInfo(msg, cfg.Prefix.Masked())
	// RFC 8106 §5.1: a lifetime of at least MaxRtrAdvInterval; its
	// recommended 3 × keeps the servers through two lost advertisements.
	dnsLife := uint32(min(3*interval/time.Second, 0xfffffffe))
	if len(cfg.DNS) > 0 {
		var err error
		if msg, err = appendRDNSS(msg, cfg.DNS, dnsLife); err != nil {
			return nil, err
		}
	}
	if len(cfg.Search) > 0 {
		var err error
		if msg, err = appendDNSSL(msg, cfg.Search, dnsLife); err != nil {
			return nil, err
		}
	}
	return msg, nil
}

// cmp0 is d, or def when d is zero.
func cmp0(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// appendPrefixInfo appends a Prefix Information option for p: on-link,
// not for autonomous address configuration.
func appendPrefixInfo(msg []byte, p netip.Prefix) []byte {
	msg = append(msg, ndOptPrefixInfo, 4, byte(p.Bits()), pioFlagOnLink)
	msg = binary.BigEndian.AppendUint32(msg, uint32(prefixValidLifetime/time.Second))
	msg = binary.BigEndian.AppendUint32(msg, uint32(prefixPreferredLifetime/time.Second))
	msg = append(msg, 0, 0, 0, 0)
	a := p.Addr().As16()
	return append(msg, a[:]...)
}

// appendRDNSS appends a Recursive DNS Server option (RFC 8106 §5.1).
func appendRDNSS(msg []byte, dns []netip.Addr, life uint32) ([]byte, error) {
	if len(dns) > 127 {
		return nil, fmt.Errorf("%d DNS servers: more than one option holds", len(dns))
	}
	msg = append(msg, ndOptRDNSS, byte(1+2*len(dns)), 0, 0)
	msg = binary.BigEndian.AppendUint32(msg, life)
	for _, ns := range dns {
		if !ns.Is6() || ns.Is4In6() {
			return nil, fmt.Errorf("DNS server %v: not IPv6", ns)
		}
		a := ns.As16()
		msg = append(msg, a[:]...)
	}
	return msg, nil
}

// appendDNSSL appends a DNS Search List option (RFC 8106 §5.2): the names
// uncompressed, as the RFC requires, padded with zeros to 8 bytes.
func appendDNSSL(msg []byte, search []string, life uint32) ([]byte, error) {
	var names []byte
	for _, d := range search {
		if err := checkDomain(d); err != nil {
			return nil, fmt.Errorf("search domain %q: %w", d, err)
		}
		for label := range strings.SplitSeq(d, ".") {
			names = append(names, byte(len(label)))
			names = append(names, label...)
		}
		names = append(names, 0)
	}
	size := 8 + len(names)
	size += (8 - size%8) % 8
	if size/8 > 255 {
		return nil, fmt.Errorf("search list of %d bytes: more than one option holds", len(names))
	}
	msg = append(msg, ndOptDNSSL, byte(size/8), 0, 0)
	msg = binary.BigEndian.AppendUint32(msg, life)
	msg = append(msg, names...)
	return append(msg, make([]byte, size-8-len(names))...), nil
}
