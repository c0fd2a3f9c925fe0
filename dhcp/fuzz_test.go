package dhcp

import (
	"net"
	"net/netip"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// FuzzHandle feeds arbitrary datagrams through the server's packet path.
// Whatever comes in, nothing panics, and every reply sent parses, carries
// our server identifier and offers no address but the guest's.
// Seeds: testdata/fuzz/FuzzHandle, real client messages.
func FuzzHandle(f *testing.F) {
	cfg := testConfig()
	cfg.GuestMAC = nil // let every seed's client through
	s := newTestServer(f, cfg)
	from := &net.UDPAddr{IP: net.IPv4zero, Port: ClientPort}
	f.Fuzz(func(t *testing.T, data []byte) {
		var conn recordingConn
		s.handle(&conn, data, from)
		if conn.sent == nil {
			return
		}
		reply, err := dhcpv4.FromBytes(conn.sent)
		if err != nil {
			t.Fatalf("sent a reply that does not parse: %v", err)
		}
		if id := addr4(reply.ServerIdentifier()); id != cfg.ServerIP {
			t.Errorf("reply server id %v, want %v", id, cfg.ServerIP)
		}
		if y := addr4(reply.YourIPAddr); y != cfg.GuestIP && y != netip.IPv4Unspecified() {
			t.Errorf("reply yiaddr %v: neither the guest's %v nor zero", y, cfg.GuestIP)
		}
		if reply.OpCode != dhcpv4.OpcodeBootReply {
			t.Errorf("reply opcode %v", reply.OpCode)
		}
	})
}

// recordingConn is a net.PacketConn that keeps what is written to it.
type recordingConn struct {
	net.PacketConn // nil: only WriteTo is called
	sent           []byte
}

func (c *recordingConn) WriteTo(p []byte, _ net.Addr) (int, error) {
	c.sent = append([]byte(nil), p...)
	return len(p), nil
}
