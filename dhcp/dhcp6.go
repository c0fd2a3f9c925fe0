package dhcp

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/insomniacslk/dhcp/rfc1035label"
)

// DHCPv6 ports and the group clients send to (RFC 8415 §7.1, §7.2).
const (
	ServerPort6 = 547
	ClientPort6 = 546
)

// AllDHCPServers is All_DHCP_Relay_Agents_and_Servers, ff02::1:2: where
// the guest's DHCPv6 client sends.
var AllDHCPServers = netip.MustParseAddr("ff02::1:2")

// DefaultLeaseTime6 is the valid and preferred lifetime of the guest's
// address when Config6.LeaseTime is zero: as DHCPv4's, a day, renewed at
// half (T1) and rebound at 80% (T2) of it (RFC 8415 §21.4's suggestions).
const DefaultLeaseTime6 = DefaultLeaseTime

// Config6 is what the DHCPv6 server tells the guest. Validated by the
// caller; NewServer6 rejects only what it cannot encode. Read once by
// NewServer6 and not kept.
type Config6 struct {
	// ServerMAC is the gateway's link address: the server's DUID-LL, the
	// same across restarts (RFC 8415 §11.4).
	ServerMAC net.HardwareAddr

	// GuestIP is the one address ever assigned (IA_NA). IPv6, inside
	// Network.
	GuestIP netip.Addr

	// Network is the guest's on-link prefix: Confirm checks addresses
	// against it.
	Network netip.Prefix

	// DNS are the name servers (option 23), IPv6 only. Empty: not sent.
	DNS []netip.Addr

	// Search is the domain search list (option 24). Empty: not sent.
	Search []string

	// LeaseTime is the address's valid and preferred lifetime; zero means
	// DefaultLeaseTime6.
	LeaseTime time.Duration
}

// Server6 is a stateless DHCPv6 server for one guest. NewServer6 makes it;
// it never changes afterwards, so Reply is safe for concurrent use.
type Server6 struct {
	duid    dhcpv6.DUID
	guestIP netip.Addr
	network netip.Prefix
	lease   time.Duration
	info    []dhcpv6.Option // DNS and search: in every positive reply
	stats   *Stats6
	log     *slog.Logger
}

// NewServer6 checks cfg and precomputes the replies' common options.
func NewServer6(cfg Config6, log *slog.Logger) (*Server6, error) {
	if len(cfg.ServerMAC) != 6 {
		return nil, fmt.Errorf("dhcpv6 config: server MAC %v: not 6 bytes", cfg.ServerMAC)
	}
	if !cfg.Network.IsValid() || !cfg.Network.Addr().Is6() || !cfg.GuestIP.Is6() || !cfg.Network.Contains(cfg.GuestIP) {
		return nil, fmt.Errorf("dhcpv6 config: guest %v not an IPv6 address in %v", cfg.GuestIP, cfg.Network)
	}
	lease, err := leaseTime(cfg.LeaseTime)
	if err != nil {
		return nil, fmt.Errorf("dhcpv6 config: %w", err)
	}
	s := &Server6{
		duid:    &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: append(net.HardwareAddr(nil), cfg.ServerMAC...)},
		guestIP: cfg.GuestIP, network: cfg.Network.Masked(), lease: lease,
		stats: &Stats6{}, log: orDiscard(log),
	}
	if len(cfg.DNS) > 0 {
		ips := make([]net.IP, len(cfg.DNS))
		for i, ns := range cfg.DNS {
			if !ns.Is6() || ns.Is4In6() {
				return nil, fmt.Errorf("dhcpv6 config: DNS server %v: not IPv6", ns)
			}
			ips[i] = ns.AsSlice()
		}
		s.info = append(s.info, dhcpv6.OptDNS(ips...))
	}
	if len(cfg.Search) > 0 {
		for _, d := range cfg.Search {
			if err := checkDomain(d); err != nil {
				return nil, fmt.Errorf("dhcpv6 config: search domain %q: %w", d, err)
			}
		}
		s.info = append(s.info, dhcpv6.OptDomainSearchList(&rfc1035label.Labels{Labels: append([]string(nil), cfg.Search...)}))
	}
	return s, nil
}

// Reply returns the answer to req, or nil when it gets none. It is a pure
// function of the Config6 and req (RFC 8415 §16 validation, §18.3):
//
//   - Solicit: an Advertise of the guest address in each IA_NA, or, when
//     the client asks for Rapid Commit, the Reply that commits it.
//   - Request, Renew, Rebind: a Reply with the guest address in each
//     IA_NA; any other address the client holds comes back with zero
//     lifetimes, so the client drops it. Stateless, so a guest renewing
//     after masq restarted keeps its address.
//   - Confirm: Success when every address is on-link, else NotOnLink.
//   - Information-request: a Reply with DNS and search domains only.
//   - Release, Decline: a Reply with Success; an IA_NA naming no guest
//     address gets NoBinding (the caller logs them).
//   - IA_TA and IA_PD: NoAddrsAvail and NoPrefixAvail in the IA.
//   - Messages without a client DUID where one is required, with a
//     server DUID where none is allowed, or naming another server: nil.
func (s *Server6) Reply(req *dhcpv6.Message) *dhcpv6.Message {
	if !s.valid(req) {
		return nil
	}
	switch req.MessageType {
	case dhcpv6.MessageTypeSolicit:
		if req.GetOneOption(dhcpv6.OptionRapidCommit) != nil {
			r := s.assign(req, dhcpv6.MessageTypeReply)
			r.AddOption(&dhcpv6.OptionGeneric{OptionCode: dhcpv6.OptionRapidCommit})
			return r
		}
		return s.assign(req, dhcpv6.MessageTypeAdvertise)
	case dhcpv6.MessageTypeRequest, dhcpv6.MessageTypeRenew, dhcpv6.MessageTypeRebind:
		return s.assign(req, dhcpv6.MessageTypeReply)
	case dhcpv6.MessageTypeConfirm:
		return s.confirm(req)
	case dhcpv6.MessageTypeInformationRequest:
		r := s.reply(req)
		s.addInfo(r)
		return r
	case dhcpv6.MessageTypeRelease, dhcpv6.MessageTypeDecline:
		return s.release(req)
	}
	return nil
}

// valid checks req's DUIDs as RFC 8415 §16 requires of its message type.
func (s *Server6) valid(req *dhcpv6.Message) bool {
	client, server := req.Options.ClientID(), req.Options.ServerID()
	ours := server != nil && server.Equal(s.duid)
	switch req.MessageType {
	case dhcpv6.MessageTypeSolicit, dhcpv6.MessageTypeConfirm, dhcpv6.MessageTypeRebind:
		return client != nil && server == nil
	case dhcpv6.MessageTypeRequest, dhcpv6.MessageTypeRenew, dhcpv6.MessageTypeRelease, dhcpv6.MessageTypeDecline:
		return client != nil && ours
	case dhcpv6.MessageTypeInformationRequest:
		return server == nil || ours
	}
	return false
}

// reply starts a reply of type Reply to req: transaction ID, server and
// client DUIDs.
func (s *Server6) reply(req *dhcpv6.Message) *dhcpv6.Message {
	r := &dhcpv6.Message{MessageType: dhcpv6.MessageTypeReply, TransactionID: req.TransactionID}
	r.AddOption(dhcpv6.OptServerID(s.duid))
	if c := req.Options.ClientID(); c != nil {
		r.AddOption(dhcpv6.OptClientID(c))
	}
	return r
}

// addInfo adds the DNS servers and search domains.
func (s *Server6) addInfo(r *dhcpv6.Message) {
	for _, o := range s.info {
		r.AddOption(o)
	}
}

// assign answers with the guest address in each of req's IA_NAs.
func (s *Server6) assign(req *dhcpv6.Message, t dhcpv6.MessageType) *dhcpv6.Message {
	r := s.reply(req)
	r.MessageType = t
	ianas := req.Options.IANA()
	for _, ia := range ianas {
		r.AddOption(s.iana(ia))
	}
	for _, ia := range req.Options.IATA() {
		r.AddOption(&dhcpv6.OptIATA{IaId: ia.IaId, Options: dhcpv6.IdentityOptions{Options: []dhcpv6.Option{
			status(iana.StatusNoAddrsAvail, "temporary addresses are not offered")}}})
	}
	for _, ia := range req.Options.IAPD() {
		r.AddOption(&dhcpv6.OptIAPD{IaId: ia.IaId, Options: dhcpv6.PDOptions{Options: []dhcpv6.Option{
			status(iana.StatusNoPrefixAvail, "prefixes are not delegated")}}})
	}
	if len(ianas) == 0 && t == dhcpv6.MessageTypeAdvertise {
		r.AddOption(status(iana.StatusNoAddrsAvail, "only IA_NA is served"))
	}
	s.addInfo(r)
	return r
}

// iana binds the guest address to ia; the client's other addresses in it
// get zero lifetimes (RFC 8415 §18.3.4, §18.3.5).
func (s *Server6) iana(ia *dhcpv6.OptIANA) *dhcpv6.OptIANA {
	out := &dhcpv6.OptIANA{IaId: ia.IaId, T1: s.lease / 2, T2: s.lease * 4 / 5}
	out.Options.Add(&dhcpv6.OptIAAddress{IPv6Addr: s.guestIP.AsSlice(), PreferredLifetime: s.lease, ValidLifetime: s.lease})
	for _, a := range ia.Options.Addresses() {
		if addr6(a.IPv6Addr) != s.guestIP {
			out.Options.Add(&dhcpv6.OptIAAddress{IPv6Addr: a.IPv6Addr})
		}
	}
	return out
}

// confirm answers whether the addresses of req's IAs are on-link; a
// Confirm with none gets no reply (RFC 8415 §18.3.3).
func (s *Server6) confirm(req *dhcpv6.Message) *dhcpv6.Message {
	var n int
	onLink := true
	for _, ia := range req.Options.IANA() {
		for _, a := range ia.Options.Addresses() {
			n++
			onLink = onLink && s.network.Contains(addr6(a.IPv6Addr))
		}
	}
	if n == 0 {
		return nil
	}
	r := s.reply(req)
	if !onLink {
		r.AddOption(status(iana.StatusNotOnLink, "not on this link"))
		return r
	}
	r.AddOption(status(iana.StatusSuccess, ""))
	return r
}

// release acknowledges a Release or Decline: there is nothing to free.
func (s *Server6) release(req *dhcpv6.Message) *dhcpv6.Message {
	r := s.reply(req)
	r.AddOption(status(iana.StatusSuccess, ""))
	for _, ia := range req.Options.IANA() {
		if !s.holdsGuest(ia) {
			r.AddOption(&dhcpv6.OptIANA{IaId: ia.IaId, Options: dhcpv6.IdentityOptions{Options: []dhcpv6.Option{
				status(iana.StatusNoBinding, "no such binding")}}})
		}
	}
	return r
}

// holdsGuest reports whether ia names the guest address.
func (s *Server6) holdsGuest(ia *dhcpv6.OptIANA) bool {
	for _, a := range ia.Options.Addresses() {
		if addr6(a.IPv6Addr) == s.guestIP {
			return true
		}
	}
	return false
}

// status is a Status Code option.
func status(code iana.StatusCode, msg string) *dhcpv6.OptStatusCode {
	return &dhcpv6.OptStatusCode{StatusCode: code, StatusMessage: msg}
}

// addr6 converts a 16-byte IPv6 net.IP; anything else gives the zero Addr.
func addr6(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip)
	if !ok || len(ip) != net.IPv6len || a.Is4In6() {
		return netip.Addr{}
	}
	return a
}
