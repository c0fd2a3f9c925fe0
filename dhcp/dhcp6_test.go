package dhcp

import (
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
)

var gatewayMAC = net.HardwareAddr{2, 0, 0, 0, 0, 0}

func testConfig6() Config6 {
	return Config6{
		ServerMAC: gatewayMAC,
		GuestIP:   netip.MustParseAddr("fd10:0:2::2"),
		Network:   netip.MustParsePrefix("fd10:0:2::/120"),
		DNS:       []netip.Addr{netip.MustParseAddr("fd10:0:2::1")},
		Search:    []string{"default.svc.cluster.local", "cluster.local"},
	}
}

func newTestServer6(t testing.TB) *Server6 {
	t.Helper()
	s, err := NewServer6(testConfig6(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var (
	clientDUID = &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: guestMAC}
	serverDUID = &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: gatewayMAC}
	otherDUID  = &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: otherMAC}
)

// msg6 builds a client message of type t with the given options.
func msg6(t dhcpv6.MessageType, opts ...dhcpv6.Option) *dhcpv6.Message {
	m := &dhcpv6.Message{MessageType: t, TransactionID: dhcpv6.TransactionID{1, 2, 3}}
	for _, o := range opts {
		m.AddOption(o)
	}
	return m
}

func ia(id byte, addrs ...string) *dhcpv6.OptIANA {
	o := &dhcpv6.OptIANA{IaId: [4]byte{0, 0, 0, id}}
	for _, a := range addrs {
		o.Options.Add(&dhcpv6.OptIAAddress{IPv6Addr: net.ParseIP(a), PreferredLifetime: time.Hour, ValidLifetime: time.Hour})
	}
	return o
}

func TestReply6(t *testing.T) {
	cid, sid, other := dhcpv6.OptClientID(clientDUID), dhcpv6.OptServerID(serverDUID), dhcpv6.OptServerID(otherDUID)
	rapid := &dhcpv6.OptionGeneric{OptionCode: dhcpv6.OptionRapidCommit}
	pd := &dhcpv6.OptIAPD{IaId: [4]byte{9}}
	tests := []struct {
		name   string
		req    *dhcpv6.Message
		want   dhcpv6.MessageType // 0: no reply
		addrs  []string           // per IA_NA: address:valid-lifetime-zero?
		status iana.StatusCode    // top-level status, when set
		iaStat iana.StatusCode    // first IA's status, when set
		info   bool               // DNS and search present
	}{
		{"solicit", msg6(dhcpv6.MessageTypeSolicit, cid, ia(1)), dhcpv6.MessageTypeAdvertise, []string{"fd10:0:2::2"}, 0, 0, true},
		{"solicit rapid commit", msg6(dhcpv6.MessageTypeSolicit, cid, ia(1), rapid), dhcpv6.MessageTypeReply, []string{"fd10:0:2::2"}, 0, 0, true},
		{"solicit without IA_NA", msg6(dhcpv6.MessageTypeSolicit, cid, pd), dhcpv6.MessageTypeAdvertise, nil, iana.StatusNoAddrsAvail, 0, true},
		{"solicit without client id", msg6(dhcpv6.MessageTypeSolicit, ia(1)), 0, nil, 0, 0, false},
		{"solicit with server id", msg6(dhcpv6.MessageTypeSolicit, cid, sid, ia(1)), 0, nil, 0, 0, false},
		{"request", msg6(dhcpv6.MessageTypeRequest, cid, sid, ia(1, "fd10:0:2::2")), dhcpv6.MessageTypeReply, []string{"fd10:0:2::2"}, 0, 0, true},
		{"request for another server", msg6(dhcpv6.MessageTypeRequest, cid, other, ia(1)), 0, nil, 0, 0, false},
		{"request without server id", msg6(dhcpv6.MessageTypeRequest, cid, ia(1)), 0, nil, 0, 0, false},
		{"renew of another address", msg6(dhcpv6.MessageTypeRenew, cid, sid, ia(1, "fd10:0:2::9")), dhcpv6.MessageTypeReply, []string{"fd10:0:2::2", "fd10:0:2::9/0"}, 0, 0, true},
		{"rebind", msg6(dhcpv6.MessageTypeRebind, cid, ia(1, "fd10:0:2::2")), dhcpv6.MessageTypeReply, []string{"fd10:0:2::2"}, 0, 0, true},
		{"confirm on-link", msg6(dhcpv6.MessageTypeConfirm, cid, ia(1, "fd10:0:2::2")), dhcpv6.MessageTypeReply, nil, iana.StatusSuccess, 0, false},
		{"confirm off-link", msg6(dhcpv6.MessageTypeConfirm, cid, ia(1, "2001:db8::2")), dhcpv6.MessageTypeReply, nil, iana.StatusNotOnLink, 0, false},
		{"confirm of nothing", msg6(dhcpv6.MessageTypeConfirm, cid, ia(1)), 0, nil, 0, 0, false},
		{"information-request", msg6(dhcpv6.MessageTypeInformationRequest), dhcpv6.MessageTypeReply, nil, 0, 0, true},
		{"information-request for another", msg6(dhcpv6.MessageTypeInformationRequest, other), 0, nil, 0, 0, false},
		{"release", msg6(dhcpv6.MessageTypeRelease, cid, sid, ia(1, "fd10:0:2::2")), dhcpv6.MessageTypeReply, nil, iana.StatusSuccess, 0, false},
		{"release of no binding", msg6(dhcpv6.MessageTypeRelease, cid, sid, ia(1, "fd10:0:2::7")), dhcpv6.MessageTypeReply, nil, iana.StatusSuccess, iana.StatusNoBinding, false},
		{"decline", msg6(dhcpv6.MessageTypeDecline, cid, sid, ia(1, "fd10:0:2::2")), dhcpv6.MessageTypeReply, nil, iana.StatusSuccess, 0, false},
		{"advertise from a client", msg6(dhcpv6.MessageTypeAdvertise, cid), 0, nil, 0, 0, false},
	}
	s := newTestServer6(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := s.Reply(tt.req)
			if tt.want == 0 {
				if got != nil {
					t.Fatalf("reply %v, want none", got.Summary())
				}
				return
			}
			if got == nil {
				t.Fatalf("no reply, want %v", tt.want)
			}
			r, err := dhcpv6.MessageFromBytes(got.ToBytes())
			if err != nil {
				t.Fatalf("reply does not parse: %v", err)
			}
			checkReply6(t, tt.req, r, tt.want)
			if tt.status != 0 || tt.want == dhcpv6.MessageTypeReply && tt.addrs == nil && !tt.info {
				if st := r.Options.Status(); st == nil || st.StatusCode != tt.status {
					t.Errorf("status %v, want %v", st, tt.status)
				}
			}
			ianas := r.Options.IANA()
			if tt.iaStat != 0 {
				if len(ianas) == 0 || ianas[0].Options.Status() == nil || ianas[0].Options.Status().StatusCode != tt.iaStat {
					t.Errorf("IA_NAs %v, want status %v in the first", ianas, tt.iaStat)
				}
			}
			if tt.addrs != nil {
				if len(ianas) != 1 || ianas[0].IaId != [4]byte{0, 0, 0, 1} {
					t.Fatalf("IA_NAs %v, want one with IAID 1", ianas)
				}
				if ianas[0].T1 != DefaultLeaseTime6/2 || ianas[0].T2 != DefaultLeaseTime6*4/5 {
					t.Errorf("T1 %v T2 %v", ianas[0].T1, ianas[0].T2)
				}
				var addrs []string
				for _, a := range ianas[0].Options.Addresses() {
					s := a.IPv6Addr.String()
					switch a.ValidLifetime {
					case 0:
						s += "/0"
					case DefaultLeaseTime6:
					default:
						t.Errorf("%v valid for %v", a.IPv6Addr, a.ValidLifetime)
					}
					addrs = append(addrs, s)
				}
				if !slices.Equal(addrs, tt.addrs) {
					t.Errorf("addresses %v, want %v", addrs, tt.addrs)
				}
			}
			hasInfo := len(r.Options.DNS()) == 1 && r.Options.DomainSearchList() != nil &&
				slices.Equal(r.Options.DomainSearchList().Labels, testConfig6().Search)
			if hasInfo != tt.info {
				t.Errorf("DNS %v search %v: info %v, want %v", r.Options.DNS(), r.Options.DomainSearchList(), hasInfo, tt.info)
			}
			if rc := r.GetOneOption(dhcpv6.OptionRapidCommit) != nil; rc != (tt.req.GetOneOption(dhcpv6.OptionRapidCommit) != nil) {
				t.Errorf("rapid commit in reply %v", rc)
			}
		})
	}
}

// checkReply6 checks what every answer carries: type, transaction ID, our
// DUID, the client's echoed.
func checkReply6(t *testing.T, req, r *dhcpv6.Message, want dhcpv6.MessageType) {
	t.Helper()
	if r.MessageType != want || r.TransactionID != req.TransactionID {
		t.Errorf("reply %v xid %v, want %v xid %v", r.MessageType, r.TransactionID, want, req.TransactionID)
	}
	if sid := r.Options.ServerID(); sid == nil || !sid.Equal(serverDUID) {
		t.Errorf("server DUID %v, want %v", sid, serverDUID)
	}
	if c := req.Options.ClientID(); c != nil && (r.Options.ClientID() == nil || !r.Options.ClientID().Equal(c)) {
		t.Errorf("client DUID %v, want %v", r.Options.ClientID(), c)
	}
}

func TestNewServer6Errors(t *testing.T) {
	for name, modify := range map[string]func(*Config6){
		"mac":        func(c *Config6) { c.ServerMAC = nil },
		"guest off":  func(c *Config6) { c.GuestIP = netip.MustParseAddr("fd11::2") },
		"v4 network": func(c *Config6) { c.Network = netip.MustParsePrefix("10.0.2.0/24") },
		"v4 dns":     func(c *Config6) { c.DNS = []netip.Addr{netip.MustParseAddr("10.0.0.1")} },
		"bad search": func(c *Config6) { c.Search = []string{"-x..y"} },
	} {
		cfg := testConfig6()
		modify(&cfg)
		if _, err := NewServer6(cfg, nil); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// FuzzHandle6 feeds arbitrary datagrams through the DHCPv6 server's packet
// path: nothing panics, every reply sent parses and carries our DUID, and
// no address but the guest's is given a lifetime.
func FuzzHandle6(f *testing.F) {
	f.Add(msg6(dhcpv6.MessageTypeSolicit, dhcpv6.OptClientID(clientDUID), ia(1)).ToBytes())
	f.Add(msg6(dhcpv6.MessageTypeRequest, dhcpv6.OptClientID(clientDUID), dhcpv6.OptServerID(serverDUID), ia(1, "fd10:0:2::2")).ToBytes())
	f.Add(msg6(dhcpv6.MessageTypeConfirm, dhcpv6.OptClientID(clientDUID), ia(1, "fd10:0:2::3")).ToBytes())
	f.Add([]byte{1, 0, 0})
	s := newTestServer6(f)
	from := &net.UDPAddr{IP: net.ParseIP("fe80::1"), Port: ClientPort6}
	guest := testConfig6().GuestIP
	f.Fuzz(func(t *testing.T, data []byte) {
		var conn recordingConn
		s.handle(&conn, data, from)
		if conn.sent == nil {
			return
		}
		r, err := dhcpv6.MessageFromBytes(conn.sent)
		if err != nil {
			t.Fatalf("sent a reply that does not parse: %v", err)
		}
		if sid := r.Options.ServerID(); sid == nil || !sid.Equal(serverDUID) {
			t.Errorf("server DUID %v", sid)
		}
		for _, ia := range r.Options.IANA() {
			for _, a := range ia.Options.Addresses() {
				if addr6(a.IPv6Addr) != guest && a.ValidLifetime != 0 {
					t.Errorf("%v given a lifetime", a.IPv6Addr)
				}
			}
		}
	})
}

func TestHandle6CountsMalformed(t *testing.T) {
	s := newTestServer6(t)
	var conn recordingConn
	s.handle(&conn, []byte{1, 2}, &net.UDPAddr{})
	s.handle(&conn, []byte{12, 0, 0, 0}, &net.UDPAddr{}) // relay-forward
	if n := s.Stats().Malformed.Load(); n != 2 || conn.sent != nil {
		t.Errorf("malformed %d, sent %x", n, conn.sent)
	}
}
