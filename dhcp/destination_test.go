package dhcp

import (
	"net/netip"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

func TestDestination(t *testing.T) {
	zero := netip.IPv4Unspecified()
	guest := netip.MustParseAddr("10.0.2.2")
	relay := netip.MustParseAddr("10.0.2.254")
	tests := []struct {
		name           string
		giaddr, ciaddr netip.Addr
		reply          dhcpv4.MessageType
		want           string
	}{
		{"offer to a new client", zero, zero, dhcpv4.MessageTypeOffer, "255.255.255.255:68"},
		{"ack to a selecting client", zero, zero, dhcpv4.MessageTypeAck, "255.255.255.255:68"},
		{"ack to a renewing client", zero, guest, dhcpv4.MessageTypeAck, "10.0.2.2:68"},
		{"ack to an inform", zero, guest, dhcpv4.MessageTypeAck, "10.0.2.2:68"},
		{"nak to a renewing client", zero, guest, dhcpv4.MessageTypeNak, "255.255.255.255:68"},
		{"nak to a new client", zero, zero, dhcpv4.MessageTypeNak, "255.255.255.255:68"},
		{"offer through a relay", relay, zero, dhcpv4.MessageTypeOffer, "10.0.2.254:67"},
		{"ack through a relay", relay, guest, dhcpv4.MessageTypeAck, "10.0.2.254:67"},
		{"nak through a relay", relay, guest, dhcpv4.MessageTypeNak, "10.0.2.254:67"},
	}
	for _, tt := range tests {
		req := &dhcpv4.DHCPv4{GatewayIPAddr: tt.giaddr.AsSlice(), ClientIPAddr: tt.ciaddr.AsSlice()}
		reply := &dhcpv4.DHCPv4{Options: dhcpv4.OptionsFromList(dhcpv4.OptMessageType(tt.reply))}
		if got := destination(req, reply).String(); got != tt.want {
			t.Errorf("%s: destination = %s, want %s", tt.name, got, tt.want)
		}
	}
}

// TestDestinationNilAddrs: a request built in memory may leave the address
// fields nil; that is the same as zero.
func TestDestinationNilAddrs(t *testing.T) {
	reply := &dhcpv4.DHCPv4{Options: dhcpv4.OptionsFromList(dhcpv4.OptMessageType(dhcpv4.MessageTypeOffer))}
	if got := destination(&dhcpv4.DHCPv4{}, reply); got != limitedBroadcast() {
		t.Errorf("destination = %v, want %v", got, limitedBroadcast())
	}
}

// TestNakThroughRelayIsBroadcast: RFC 2131 §4.3.2 has the relay broadcast
// a NAK, so the server sets the broadcast bit.
func TestNakThroughRelayIsBroadcast(t *testing.T) {
	req := request(t, guestMAC, netip.MustParseAddr("10.0.2.9"), netip.Addr{}, netip.Addr{})
	req.GatewayIPAddr = netip.MustParseAddr("10.0.2.254").AsSlice()
	nak := newTestServer(t, testConfig()).Reply(req)
	if nak == nil || nak.MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("got %v, want a NAK", nak)
	}
	if !nak.IsBroadcast() {
		t.Error("NAK through a relay lacks the broadcast bit")
	}
}
