package dhcp

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

func testRAConfig() RAConfig {
	return RAConfig{
		MAC:    net.HardwareAddr{2, 0, 0, 0, 0, 0},
		Prefix: netip.MustParsePrefix("fd10:0:2::/120"),
		MTU:    1450,
		DNS:    []netip.Addr{netip.MustParseAddr("fd00::10"), netip.MustParseAddr("fd00::11")},
		Search: []string{"default.svc.cluster.local", "cluster.local"},
	}
}

// parsedRA is what gVisor's own NDP parser reads out of an advertisement.
type parsedRA struct {
	managed, other bool
	lifetime       time.Duration
	mac            tcpip.LinkAddress
	mtu            uint32
	prefix         tcpip.Subnet
	onLink, auto   bool
	dns            []tcpip.Address
	dnsLife        time.Duration
	search         []string
}

func parseRA(t *testing.T, msg []byte) parsedRA {
	t.Helper()
	icmp := header.ICMPv6(msg)
	if icmp.Type() != header.ICMPv6RouterAdvert || icmp.Code() != 0 {
		t.Fatalf("type %d code %d", icmp.Type(), icmp.Code())
	}
	ra := header.NDPRouterAdvert(icmp.MessageBody())
	p := parsedRA{managed: ra.ManagedAddrConfFlag(), other: ra.OtherConfFlag(), lifetime: ra.RouterLifetime()}
	p.mtu = rawMTU(t, ra.Options())
	it, err := ra.Options().Iter(true)
	if err != nil {
		t.Fatalf("options: %v", err)
	}
	for {
		opt, done, err := it.Next()
		if err != nil {
			t.Fatalf("option: %v", err)
		}
		if done {
			return p
		}
		switch o := opt.(type) {
		case header.NDPSourceLinkLayerAddressOption:
			p.mac = o.EthernetAddress()
		case header.NDPPrefixInformation:
			p.prefix, p.onLink, p.auto = o.Subnet(), o.OnLinkFlag(), o.AutonomousAddressConfigurationFlag()
		case header.NDPRecursiveDNSServer:
			addrs, err := o.Addresses()
			if err != nil {
				t.Fatalf("RDNSS: %v", err)
			}
			p.dns, p.dnsLife = addrs, o.Lifetime()
		case header.NDPDNSSearchList:
			p.search, err = o.DomainNames()
			if err != nil {
				t.Fatalf("DNSSL: %v", err)
			}
		}
	}
}

// rawMTU walks the options for the MTU option, which gVisor does not parse.
func rawMTU(t *testing.T, opts []byte) uint32 {
	t.Helper()
	for len(opts) >= 8 {
		n := int(opts[1]) * 8
		if n == 0 || n > len(opts) {
			t.Fatalf("option length %d of %d bytes", n, len(opts))
		}
		if opts[0] == ndOptMTU {
			return uint32(opts[4])<<24 | uint32(opts[5])<<16 | uint32(opts[6])<<8 | uint32(opts[7])
		}
		opts = opts[n:]
	}
	return 0
}

func TestBuildRA(t *testing.T) {
	msg, err := BuildRA(testRAConfig())
	if err != nil {
		t.Fatal(err)
	}
	if len(msg)%8 != 0 {
		t.Errorf("length %d: options not 8-byte aligned", len(msg))
	}
	p := parseRA(t, msg)
	want := parsedRA{
		managed: true, other: true, lifetime: DefaultRouterLifetime,
		mac: tcpip.LinkAddress("\x02\x00\x00\x00\x00\x00"), mtu: 1450,
		prefix: tcpip.AddressWithPrefix{Address: tcpip.AddrFrom16(netip.MustParseAddr("fd10:0:2::").As16()), PrefixLen: 120}.Subnet(),
		onLink: true, auto: false,
		dns:     []tcpip.Address{tcpip.AddrFrom16(netip.MustParseAddr("fd00::10").As16()), tcpip.AddrFrom16(netip.MustParseAddr("fd00::11").As16())},
		dnsLife: 3 * DefaultRAInterval,
		search:  []string{"default.svc.cluster.local", "cluster.local"},
	}
	if p.managed != want.managed || p.other != want.other || p.lifetime != want.lifetime || p.mac != want.mac ||
		p.mtu != want.mtu || p.prefix != want.prefix || p.onLink != want.onLink || p.auto != want.auto ||
		!slices.Equal(p.dns, want.dns) || p.dnsLife != want.dnsLife || !slices.Equal(p.search, want.search) {
		t.Errorf("parsed\n%+v\nwant\n%+v", p, want)
	}
}

func TestBuildRAOptional(t *testing.T) {
	cfg := testRAConfig()
	cfg.DNS, cfg.Search = nil, nil
	cfg.Interval, cfg.RouterLifetime = 30*time.Second, 90*time.Second
	cfg.Prefix = netip.MustParsePrefix("fd10:0:2::1/64") // host bits are masked
	msg, err := BuildRA(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := parseRA(t, msg)
	if p.dns != nil || p.search != nil {
		t.Errorf("RDNSS %v, DNSSL %v: want none", p.dns, p.search)
	}
	if p.lifetime != 90*time.Second {
		t.Errorf("router lifetime %v", p.lifetime)
	}
	if p.prefix.Prefix() != 64 || p.prefix.ID() != tcpip.AddrFrom16(netip.MustParseAddr("fd10:0:2::").As16()) {
		t.Errorf("prefix %v", p.prefix)
	}
}

func TestBuildRAErrors(t *testing.T) {
	for _, tt := range []struct {
		name   string
		modify func(*RAConfig)
		want   string
	}{
		{"mac", func(c *RAConfig) { c.MAC = nil }, "MAC"},
		{"v4 prefix", func(c *RAConfig) { c.Prefix = netip.MustParsePrefix("10.0.2.0/24") }, "not an IPv6 prefix"},
		{"mtu", func(c *RAConfig) { c.MTU = 1279 }, "1280"},
		{"lifetime", func(c *RAConfig) { c.RouterLifetime = 9001 * time.Second }, "router lifetime"},
		{"v4 dns", func(c *RAConfig) { c.DNS = []netip.Addr{netip.MustParseAddr("10.96.0.10")} }, "not IPv6"},
		{"bad domain", func(c *RAConfig) { c.Search = []string{"a..b"} }, "search domain"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testRAConfig()
			tt.modify(&cfg)
			if _, err := BuildRA(cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err %v, want one containing %q", err, tt.want)
			}
		})
	}
}
