package dhcp

import (
	"bytes"
	"maps"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

var (
	guestMAC = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x01}
	otherMAC = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x99}
)

// testConfig is KubeVirt's masquerade network in a Kubernetes pod.
func testConfig() Config {
	search := []string{"default.svc.cluster.local", "svc.cluster.local", "cluster.local"}
	return Config{
		ServerIP:   netip.MustParseAddr("10.0.2.1"),
		GuestIP:    netip.MustParseAddr("10.0.2.2"),
		Network:    netip.MustParsePrefix("10.0.2.0/24"),
		DNS:        []netip.Addr{netip.MustParseAddr("10.96.0.10"), netip.MustParseAddr("10.96.0.11")},
		Search:     search,
		DomainName: LongestDomain(search),
		Hostname:   "vmi-fedora",
		MTU:        1450,
		LeaseTime:  999 * 24 * time.Hour,
		GuestMAC:   guestMAC,
	}
}

func newTestServer(t testing.TB, cfg Config) *Server {
	t.Helper()
	s, err := NewServer(cfg, nil)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	return s
}

// wire returns p as a client would receive it: encoded and parsed again.
func wire(t testing.TB, p *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	t.Helper()
	back, err := dhcpv4.FromBytes(p.ToBytes())
	if err != nil {
		t.Fatalf("reply does not parse: %v", err)
	}
	return back
}

// must returns a function that fails t on err: must(t)(dhcpv4.New(...)).
func must(t testing.TB) func(*dhcpv4.DHCPv4, error) *dhcpv4.DHCPv4 {
	return func(p *dhcpv4.DHCPv4, err error) *dhcpv4.DHCPv4 {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
}

func discover(t testing.TB, mac net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	return must(t)(dhcpv4.NewDiscovery(mac, mods...))
}

// request builds a REQUEST from mac with the given options 50 and 54 and
// ciaddr; an invalid Addr leaves the option out or ciaddr zero.
func request(t testing.TB, mac net.HardwareAddr, want, serverID, ciaddr netip.Addr) *dhcpv4.DHCPv4 {
	mods := []dhcpv4.Modifier{dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithHwAddr(mac)}
	if want.IsValid() {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(want.AsSlice())))
	}
	if serverID.IsValid() {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(serverID.AsSlice())))
	}
	if ciaddr.IsValid() {
		mods = append(mods, dhcpv4.WithClientIP(ciaddr.AsSlice()))
	}
	return must(t)(dhcpv4.New(mods...))
}

func message(t testing.TB, typ dhcpv4.MessageType, mac net.HardwareAddr, ciaddr netip.Addr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	mods = append([]dhcpv4.Modifier{dhcpv4.WithMessageType(typ), dhcpv4.WithHwAddr(mac), dhcpv4.WithClientIP(ciaddr.AsSlice())}, mods...)
	return must(t)(dhcpv4.New(mods...))
}

// TestReplyOfferOptions reads every option of an OFFER back with dhcpv4's
// getters, from the bytes a client receives. The DISCOVER asks only for
// options 1, 3, 6 and 15: the MTU must come anyway.
func TestReplyOfferOptions(t *testing.T) {
	cfg := testConfig()
	s := newTestServer(t, cfg)
	offer := s.Reply(discover(t, guestMAC))
	if offer == nil {
		t.Fatal("no reply to DISCOVER")
	}
	o := wire(t, offer)
	ip := func(s string) net.IP { return net.ParseIP(s).To4() }
	checks := []struct {
		name      string
		got, want any
	}{
		{"message type (53)", o.MessageType(), dhcpv4.MessageTypeOffer},
		{"yiaddr", o.YourIPAddr.String(), "10.0.2.2"},
		{"siaddr", o.ServerIPAddr.String(), "10.0.2.1"},
		{"subnet mask (1)", net.IP(o.SubnetMask()).String(), "255.255.255.0"},
		{"router (3)", o.Router(), []net.IP{ip("10.0.2.1")}},
		{"DNS (6)", o.DNS(), []net.IP{ip("10.96.0.10"), ip("10.96.0.11")}},
		{"hostname (12)", o.HostName(), "vmi-fedora"},
		{"domain name (15)", o.DomainName(), "default.svc.cluster.local"},
		{"MTU (26)", mtu(o), uint16(1450)},
		{"broadcast (28)", o.BroadcastAddress().String(), "10.0.2.255"},
		{"lease time (51)", o.IPAddressLeaseTime(0), 999 * 24 * time.Hour},
		{"server id (54)", o.ServerIdentifier().String(), "10.0.2.1"},
		{"search (119)", searchList(o), cfg.Search},
	}
	for _, c := range checks {
		if !equal(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func mtu(p *dhcpv4.DHCPv4) uint16 {
	v, err := dhcpv4.GetUint16(dhcpv4.OptionInterfaceMTU, p.Options)
	if err != nil {
		return 0
	}
	return v
}

func searchList(p *dhcpv4.DHCPv4) []string {
	if l := p.DomainSearch(); l != nil {
		return l.Labels
	}
	return nil
}

func equal(a, b any) bool {
	switch a := a.(type) {
	case []net.IP:
		return slices.EqualFunc(a, b.([]net.IP), net.IP.Equal)
	case []string:
		return slices.Equal(a, b.([]string))
	}
	return a == b
}

// replyCase is a request and what its reply must be.
type replyCase struct {
	name     string
	req      func(t *testing.T) *dhcpv4.DHCPv4
	want     dhcpv4.MessageType // MessageTypeNone: no reply
	yiaddr   netip.Addr
	ciaddr   netip.Addr
	hasLease bool
}

// replyCases are requests of every kind to a server with Config cfg.
func replyCases(cfg Config) []replyCase {
	guest, server := cfg.GuestIP, cfg.ServerIP
	other := netip.MustParseAddr("10.0.2.3")
	foreign := netip.MustParseAddr("192.168.1.1")
	none := netip.Addr{}
	return []replyCase{
		{"discover", func(t *testing.T) *dhcpv4.DHCPv4 { return discover(t, guestMAC) },
			dhcpv4.MessageTypeOffer, guest, netip.IPv4Unspecified(), true},
		{"request selecting", func(t *testing.T) *dhcpv4.DHCPv4 { return request(t, guestMAC, guest, server, none) },
			dhcpv4.MessageTypeAck, guest, netip.IPv4Unspecified(), true},
		{"request selecting other address", func(t *testing.T) *dhcpv4.DHCPv4 { return request(t, guestMAC, other, server, none) },
			dhcpv4.MessageTypeNak, netip.IPv4Unspecified(), netip.IPv4Unspecified(), false},
		{"request init-reboot", func(t *testing.T) *dhcpv4.DHCPv4 { return request(t, guestMAC, guest, none, none) },
			dhcpv4.MessageTypeAck, guest, netip.IPv4Unspecified(), true},
		{"request init-reboot from another network", func(t *testing.T) *dhcpv4.DHCPv4 { return request(t, guestMAC, foreign, none, none) },
			dhcpv4.MessageTypeNak, netip.IPv4Unspecified(), netip.IPv4Unspecified(), false},
		{"renew never offered", func(t *testing.T) *dhcpv4.DHCPv4 { return request(t, guestMAC, none, none, guest) },
			dhcpv4.MessageTypeAck, guest, guest, true},
		{"renew other address", func(t *testing.T) *dhcpv4.DHCPv4 { return request(t, guestMAC, none, none, other) },
			dhcpv4.MessageTypeNak, netip.IPv4Unspecified(), netip.IPv4Unspecified(), false},
		{"request for another server", func(t *testing.T) *dhcpv4.DHCPv4 { return request(t, guestMAC, guest, foreign, none) },
			dhcpv4.MessageTypeNone, none, none, false},
		{"request for nothing", func(t *testing.T) *dhcpv4.DHCPv4 { return request(t, guestMAC, none, none, none) },
			dhcpv4.MessageTypeNone, none, none, false},
		{"inform", func(t *testing.T) *dhcpv4.DHCPv4 { return message(t, dhcpv4.MessageTypeInform, guestMAC, guest) },
			dhcpv4.MessageTypeAck, netip.IPv4Unspecified(), guest, false},
		{"inform from another address", func(t *testing.T) *dhcpv4.DHCPv4 { return message(t, dhcpv4.MessageTypeInform, guestMAC, other) },
			dhcpv4.MessageTypeNone, none, none, false},
		{"release", func(t *testing.T) *dhcpv4.DHCPv4 { return message(t, dhcpv4.MessageTypeRelease, guestMAC, guest) },
			dhcpv4.MessageTypeNone, none, none, false},
		{"decline", func(t *testing.T) *dhcpv4.DHCPv4 {
			return message(t, dhcpv4.MessageTypeDecline, guestMAC, netip.IPv4Unspecified(),
				dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(guest.AsSlice())))
		}, dhcpv4.MessageTypeNone, none, none, false},
		{"discover from another MAC", func(t *testing.T) *dhcpv4.DHCPv4 { return discover(t, otherMAC) },
			dhcpv4.MessageTypeNone, none, none, false},
		{"request from another MAC", func(t *testing.T) *dhcpv4.DHCPv4 { return request(t, otherMAC, guest, server, none) },
			dhcpv4.MessageTypeNone, none, none, false},
		{"BOOTREPLY", func(t *testing.T) *dhcpv4.DHCPv4 {
			p := discover(t, guestMAC)
			p.OpCode = dhcpv4.OpcodeBootReply
			return p
		}, dhcpv4.MessageTypeNone, none, none, false},
		{"no message type (BOOTP)", func(t *testing.T) *dhcpv4.DHCPv4 {
			p := discover(t, guestMAC)
			p.Options.Del(dhcpv4.OptionDHCPMessageType)
			return p
		}, dhcpv4.MessageTypeNone, none, none, false},
		{"an OFFER sent to the server", func(t *testing.T) *dhcpv4.DHCPv4 { return message(t, dhcpv4.MessageTypeOffer, guestMAC, none) },
			dhcpv4.MessageTypeNone, none, none, false},
	}
}

// TestReply covers the answer to each kind of message. Every case runs on
// a fresh server: the answers must not depend on earlier ones.
func TestReply(t *testing.T) {
	cfg := testConfig()
	for _, tt := range replyCases(cfg) {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.req(t)
			reply := newTestServer(t, cfg).Reply(req)
			if tt.want == dhcpv4.MessageTypeNone {
				if reply != nil {
					t.Fatalf("got a %v, want no reply", reply.MessageType())
				}
				return
			}
			if reply == nil {
				t.Fatalf("no reply, want %v", tt.want)
			}
			r := wire(t, reply)
			checkHeader(t, req, r)
			if got := r.MessageType(); got != tt.want {
				t.Errorf("message type %v, want %v", got, tt.want)
			}
			if got := addr4(r.YourIPAddr); got != tt.yiaddr {
				t.Errorf("yiaddr %v, want %v", got, tt.yiaddr)
			}
			if got := addr4(r.ClientIPAddr); got != tt.ciaddr {
				t.Errorf("ciaddr %v, want %v", got, tt.ciaddr)
			}
			if got := r.Options.Has(dhcpv4.OptionIPAddressLeaseTime); got != tt.hasLease {
				t.Errorf("has lease time: %v, want %v", got, tt.hasLease)
			}
		})
	}
}

// checkHeader checks what every reply carries whatever its type.
func checkHeader(t *testing.T, req, r *dhcpv4.DHCPv4) {
	t.Helper()
	if r.OpCode != dhcpv4.OpcodeBootReply {
		t.Errorf("opcode %v, want BOOTREPLY", r.OpCode)
	}
	if r.TransactionID != req.TransactionID {
		t.Errorf("xid %v, want %v", r.TransactionID, req.TransactionID)
	}
	if !bytes.Equal(r.ClientHWAddr, req.ClientHWAddr) {
		t.Errorf("chaddr %v, want %v", r.ClientHWAddr, req.ClientHWAddr)
	}
	if r.Flags != req.Flags {
		t.Errorf("flags %#x, want %#x", r.Flags, req.Flags)
	}
	if got := r.ServerIdentifier().String(); got != "10.0.2.1" {
		t.Errorf("server id %s, want 10.0.2.1", got)
	}
}

// TestReplyNakOptions checks that a NAK carries no configuration.
func TestReplyNakOptions(t *testing.T) {
	cfg := testConfig()
	nak := newTestServer(t, cfg).Reply(request(t, guestMAC, netip.MustParseAddr("10.0.2.3"), netip.Addr{}, netip.Addr{}))
	if nak == nil {
		t.Fatal("no NAK")
	}
	got := slices.Sorted(maps.Keys(wire(t, nak).Options))
	want := []uint8{dhcpv4.OptionDHCPMessageType.Code(), dhcpv4.OptionServerIdentifier.Code()}
	if !slices.Equal(got, want) {
		t.Errorf("NAK options %v, want %v", got, want)
	}
}

// TestReplySameAfterRestart renews on a second server built from the same
// Config, as after masq restarted: the ACK must be the one the first gave.
func TestReplySameAfterRestart(t *testing.T) {
	cfg := testConfig()
	first := newTestServer(t, cfg)
	offer := first.Reply(discover(t, guestMAC))
	ack := first.Reply(must(t)(dhcpv4.NewRequestFromOffer(wire(t, offer))))
	if ack == nil {
		t.Fatal("no ACK from the first server")
	}
	renew := must(t)(dhcpv4.NewRenewFromAck(wire(t, ack)))
	again := newTestServer(t, cfg).Reply(renew)
	if again == nil || again.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("renew after restart: got %v, want an ACK", again)
	}
	if !maps.EqualFunc(wire(t, ack).Options, wire(t, again).Options, bytes.Equal) {
		t.Errorf("options changed after restart:\nbefore %v\nafter  %v", ack.Options, again.Options)
	}
}

// TestReplyEchoes checks the fields and options copied from the request.
func TestReplyEchoes(t *testing.T) {
	relay := netip.MustParseAddr("10.0.2.254")
	clientID := []byte{0xff, 1, 2, 3, 4, 0, 2, 0, 0, 0xab, 0x11}
	req := discover(t, guestMAC, dhcpv4.WithBroadcast(true), dhcpv4.WithGatewayIP(relay.AsSlice()),
		dhcpv4.WithOption(dhcpv4.OptClientIdentifier(clientID)))
	r := newTestServer(t, testConfig()).Reply(req)
	if r == nil {
		t.Fatal("no reply")
	}
	r = wire(t, r)
	if !r.IsBroadcast() {
		t.Error("broadcast flag not echoed")
	}
	if got := addr4(r.GatewayIPAddr); got != relay {
		t.Errorf("giaddr %v, want %v", got, relay)
	}
	if got := r.Options.Get(dhcpv4.OptionClientIdentifier); !bytes.Equal(got, clientID) {
		t.Errorf("client identifier % x, want % x", got, clientID)
	}
}

// TestReplyAnyMAC answers every client when Config.GuestMAC is nil.
func TestReplyAnyMAC(t *testing.T) {
	cfg := testConfig()
	cfg.GuestMAC = nil
	s := newTestServer(t, cfg)
	for _, mac := range []net.HardwareAddr{guestMAC, otherMAC} {
		if r := s.Reply(discover(t, mac)); r == nil || r.MessageType() != dhcpv4.MessageTypeOffer {
			t.Errorf("DISCOVER from %v: got %v, want an OFFER", mac, r)
		}
	}
}

// TestReplyOmitsUnsetOptions: no nameserver means no option 6, never a
// made-up one; no search list, domain or hostname means no 119, 15, 12.
func TestReplyOmitsUnsetOptions(t *testing.T) {
	cfg := testConfig()
	cfg.DNS, cfg.Search, cfg.DomainName, cfg.Hostname = nil, nil, "", ""
	r := wire(t, newTestServer(t, cfg).Reply(discover(t, guestMAC)))
	for _, code := range []dhcpv4.OptionCode{
		dhcpv4.OptionDomainNameServer, dhcpv4.OptionDNSDomainSearchList,
		dhcpv4.OptionDomainName, dhcpv4.OptionHostName,
	} {
		if r.Options.Has(code) {
			t.Errorf("option %v sent: %v", code, r.Options.Get(code))
		}
	}
	if mtu(r) != cfg.MTU {
		t.Errorf("MTU %d, want %d", mtu(r), cfg.MTU)
	}
}

func TestNewServerLeaseTime(t *testing.T) {
	tests := []struct {
		lease, want time.Duration
	}{
		{0, DefaultLeaseTime},
		{time.Hour, time.Hour},
		{200 * 365 * 24 * time.Hour, maxLeaseTime},
	}
	for _, tt := range tests {
		cfg := testConfig()
		cfg.LeaseTime = tt.lease
		r := wire(t, newTestServer(t, cfg).Reply(discover(t, guestMAC)))
		if got := r.IPAddressLeaseTime(0); got != tt.want {
			t.Errorf("LeaseTime %v: option 51 is %v, want %v", tt.lease, got, tt.want)
		}
	}
}

func TestNewServerRejects(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
	}{
		{"IPv6 network", func(c *Config) { c.Network = netip.MustParsePrefix("fd10:0:2::/120") }},
		{"zero network", func(c *Config) { c.Network = netip.Prefix{} }},
		{"guest outside the network", func(c *Config) { c.GuestIP = netip.MustParseAddr("10.0.3.2") }},
		{"server unset", func(c *Config) { c.ServerIP = netip.Addr{} }},
		{"server is guest", func(c *Config) { c.ServerIP = c.GuestIP }},
		{"IPv6 DNS", func(c *Config) { c.DNS = append(c.DNS, netip.MustParseAddr("fd00::10")) }},
		{"MTU unset", func(c *Config) { c.MTU = 0 }},
		{"MTU 67", func(c *Config) { c.MTU = 67 }},
		{"negative lease", func(c *Config) { c.LeaseTime = -time.Hour }},
		{"sub-second lease", func(c *Config) { c.LeaseTime = time.Millisecond }},
		{"bad search domain", func(c *Config) { c.Search = []string{"a..b"} }},
	}
	for _, tt := range tests {
		cfg := testConfig()
		tt.change(&cfg)
		if _, err := NewServer(cfg, nil); err == nil {
			t.Errorf("%s: NewServer accepted %+v", tt.name, cfg)
		}
	}
}

func TestBroadcastAddr(t *testing.T) {
	for _, tt := range []struct{ prefix, want string }{
		{"10.0.2.0/24", "10.0.2.255"},
		{"10.0.2.7/24", "10.0.2.255"},
		{"172.16.0.0/12", "172.31.255.255"},
		{"10.0.2.0/30", "10.0.2.3"},
		{"0.0.0.0/0", "255.255.255.255"},
		{"10.0.2.2/32", "10.0.2.2"},
	} {
		if got := broadcastAddr(netip.MustParsePrefix(tt.prefix)).String(); got != tt.want {
			t.Errorf("broadcastAddr(%s) = %s, want %s", tt.prefix, got, tt.want)
		}
	}
}
