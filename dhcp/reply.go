package dhcp

import (
	"bytes"
	"net"
	"net/netip"
	"slices"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Reply returns the answer to req, or nil when req gets none. It is a pure
// function of the server's Config and req, safe for concurrent use:
//
//   - DISCOVER: an OFFER of the guest address.
//   - REQUEST for the guest address (option 50, else ciaddr when renewing
//     or rebinding): an ACK, whether or not this process ever offered it,
//     so a guest renewing after masq restarted keeps its lease.
//   - REQUEST for any other address: a NAK.
//   - REQUEST naming another server (option 54): nil, the client chose it.
//   - INFORM from the guest address: an ACK with the options, no yiaddr and
//     no lease time (RFC 2131 §4.3.5).
//   - RELEASE, DECLINE (nothing to free: the caller logs them), replies,
//     other message types and clients other than Config.GuestMAC: nil.
//
// The reply echoes xid, flags, chaddr and giaddr, and copies the client
// identifier (RFC 6842) and relay agent information (RFC 3046). Its option
// values are shared with the server: replace them, never modify in place.
func (s *Server) Reply(req *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	if !s.accepts(req) {
		return nil
	}
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		return s.lease(req, dhcpv4.MessageTypeOffer)
	case dhcpv4.MessageTypeRequest:
		return s.request(req)
	case dhcpv4.MessageTypeInform:
		return s.inform(req)
	}
	return nil
}

// accepts reports whether req is a client's message this server answers.
func (s *Server) accepts(req *dhcpv4.DHCPv4) bool {
	if req.OpCode != dhcpv4.OpcodeBootRequest {
		return false
	}
	return s.guestMAC == nil || bytes.Equal(req.ClientHWAddr, s.guestMAC)
}

// request answers a REQUEST in any client state (RFC 2131 §4.3.2).
func (s *Server) request(req *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	if req.Options.Has(dhcpv4.OptionServerIdentifier) && addr4(req.ServerIdentifier()) != s.serverIP {
		return nil
	}
	switch want := requested(req); {
	case !want.IsValid() || want.IsUnspecified():
		return nil // asks for nothing: malformed
	case want != s.guestIP:
		return s.nak(req)
	}
	return s.lease(req, dhcpv4.MessageTypeAck)
}

// requested returns the address a REQUEST or DECLINE is about: option 50,
// else ciaddr (RENEWING and REBINDING clients send only ciaddr).
func requested(req *dhcpv4.DHCPv4) netip.Addr {
	if want := addr4(req.RequestedIPAddress()); want.IsValid() {
		return want
	}
	return addr4(req.ClientIPAddr)
}

// lease returns an OFFER or ACK of the guest address.
func (s *Server) lease(req *dhcpv4.DHCPv4, t dhcpv4.MessageType) *dhcpv4.DHCPv4 {
	r := s.reply(req, t, s.opts.lease)
	r.YourIPAddr = s.guestIP.AsSlice()
	r.ServerIPAddr = s.serverIP.AsSlice()
	if t == dhcpv4.MessageTypeAck {
		r.ClientIPAddr = ip4(req.ClientIPAddr)
	}
	return r
}

// inform answers an INFORM from the guest address.
func (s *Server) inform(req *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	if addr4(req.ClientIPAddr) != s.guestIP {
		return nil
	}
	r := s.reply(req, dhcpv4.MessageTypeAck, s.opts.inform)
	r.ClientIPAddr = s.guestIP.AsSlice()
	r.ServerIPAddr = s.serverIP.AsSlice()
	return r
}

// nak refuses a REQUEST. Through a relay it sets the broadcast bit so the
// relay broadcasts it (RFC 2131 §4.3.2).
func (s *Server) nak(req *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	r := s.reply(req, dhcpv4.MessageTypeNak, s.opts.nak)
	if relayed(req) {
		r.SetBroadcast()
	}
	return r
}

// reply returns a BOOTREPLY to req carrying opts and message type t, with
// every address field zero except giaddr.
func (s *Server) reply(req *dhcpv4.DHCPv4, t dhcpv4.MessageType, opts dhcpv4.Options) *dhcpv4.DHCPv4 {
	o := clone(opts)
	o.Update(dhcpv4.OptMessageType(t))
	for _, code := range []dhcpv4.OptionCode{dhcpv4.OptionClientIdentifier, dhcpv4.OptionRelayAgentInformation} {
		if v := req.Options.Get(code); v != nil {
			o[code.Code()] = slices.Clone(v)
		}
	}
	return &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootReply,
		HWType:        req.HWType,
		TransactionID: req.TransactionID,
		Flags:         req.Flags,
		ClientIPAddr:  make(net.IP, net.IPv4len),
		YourIPAddr:    make(net.IP, net.IPv4len),
		ServerIPAddr:  make(net.IP, net.IPv4len),
		GatewayIPAddr: ip4(req.GatewayIPAddr),
		ClientHWAddr:  slices.Clone(req.ClientHWAddr),
		Options:       o,
	}
}

// addr4 converts an IPv4 address in either net.IP form; anything else
// (nil, a wrong length) gives the zero Addr.
func addr4(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}
	}
	a = a.Unmap()
	if !a.Is4() {
		return netip.Addr{}
	}
	return a
}

// ip4 returns a copy of ip as a 4-byte net.IP, or 0.0.0.0 if it is not
// IPv4. The copy is new: never net.IPv4zero, which a caller could modify.
func ip4(ip net.IP) net.IP {
	if a := addr4(ip); a.IsValid() {
		return a.AsSlice()
	}
	return make(net.IP, net.IPv4len)
}
