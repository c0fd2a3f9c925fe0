package dhcp

import (
	"net/netip"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// DHCPv4 ports (RFC 2131 §4.1): servers and relays listen on ServerPort,
// clients on ClientPort. Both are fixed by the protocol, so the server
// binds, and this package replies to, these and no others.
const (
	ServerPort = 67
	ClientPort = 68
)

// limitedBroadcast returns where a reply goes when the client has no
// address yet: 255.255.255.255:68. RFC 2131 §4.1 would have a server
// unicast to yiaddr at chaddr when the broadcast bit is clear, but that
// needs a hand-made ARP entry; every client accepts the broadcast.
func limitedBroadcast() netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{255, 255, 255, 255}), ClientPort)
}

// destination returns where reply, the answer to req, is sent (RFC 2131
// §4.1): to the relay at giaddr:67 when there is one; otherwise a NAK is
// broadcast, and anything else goes to ciaddr:68 when the client has an
// address (renewing, INFORM) and is broadcast when it has none.
func destination(req, reply *dhcpv4.DHCPv4) netip.AddrPort {
	if relayed(req) {
		return netip.AddrPortFrom(addr4(req.GatewayIPAddr), ServerPort)
	}
	if reply.MessageType() == dhcpv4.MessageTypeNak {
		return limitedBroadcast()
	}
	if ci := addr4(req.ClientIPAddr); ci.IsValid() && !ci.IsUnspecified() {
		return netip.AddrPortFrom(ci, ClientPort)
	}
	return limitedBroadcast()
}

// relayed reports whether req came through a relay agent (giaddr set).
func relayed(req *dhcpv4.DHCPv4) bool {
	gi := addr4(req.GatewayIPAddr)
	return gi.IsValid() && !gi.IsUnspecified()
}
