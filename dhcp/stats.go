package dhcp

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Stats counts the DHCPv4 messages the server saw and sent, by type, and
// says what it last granted: masq keeps no lease, but it can say whether
// the guest holds one.
type Stats struct {
	// Received counts the guest's requests by message type ("discover",
	// "request", "release", ...); Sent the replies ("offer", "ack",
	// "nak"). Ignored counts datagrams that were not the guest's or not
	// DHCP.
	Received, Sent map[string]uint64
	Ignored        uint64
	// Lease is the last address the guest was granted (an ACK), zero
	// when none was or the guest released it.
	Lease Lease
}

// Lease is an address granted to the guest.
type Lease struct {
	MAC     string    `json:"mac,omitempty"`
	IP      string    `json:"ip,omitempty"`
	Granted time.Time `json:"granted,omitzero"`
	Expires time.Time `json:"expires,omitzero"`
}

// messageTypes are the DHCP message types (RFC 2132 §9.6 and RFC 4388):
// counters are kept for types up to this.
const messageTypes = 19

// stats is Stats kept with atomics (the counts) and a lock (the lease,
// written on an ACK or a RELEASE only).
type stats struct {
	received, sent [messageTypes]atomic.Uint64
	ignored        atomic.Uint64

	mu    sync.Mutex
	lease Lease // guarded by mu
}

// count records req and its reply (nil: none), and the lease they grant
// or release. accepted says req was the guest's.
func (s *stats) count(req, reply *dhcpv4.DHCPv4, accepted bool, leaseTime time.Duration) {
	if !accepted {
		s.ignored.Add(1)
		return
	}
	if t := req.MessageType(); t < messageTypes {
		s.received[t].Add(1)
	}
	if reply == nil {
		if req.MessageType() == dhcpv4.MessageTypeRelease {
			s.mu.Lock()
			s.lease = Lease{}
			s.mu.Unlock()
		}
		return
	}
	t := reply.MessageType()
	if t < messageTypes {
		s.sent[t].Add(1)
	}
	if t == dhcpv4.MessageTypeAck && !reply.YourIPAddr.IsUnspecified() {
		now := time.Now()
		s.mu.Lock()
		s.lease = Lease{MAC: net.HardwareAddr(req.ClientHWAddr).String(), IP: reply.YourIPAddr.String(),
			Granted: now, Expires: now.Add(leaseTime)}
		s.mu.Unlock()
	}
}

// Stats returns what the server counted.
func (s *Server) Stats() Stats {
	c := s.stats
	out := Stats{Received: map[string]uint64{}, Sent: map[string]uint64{}, Ignored: c.ignored.Load()}
	for t := range messageTypes {
		name := typeName(dhcpv4.MessageType(t))
		if v := c.received[t].Load(); v > 0 {
			out.Received[name] = v
		}
		if v := c.sent[t].Load(); v > 0 {
			out.Sent[name] = v
		}
	}
	c.mu.Lock()
	out.Lease = c.lease
	c.mu.Unlock()
	return out
}

// typeName is a message type as a metric label: "discover", "ack".
func typeName(t dhcpv4.MessageType) string {
	switch t {
	case dhcpv4.MessageTypeDiscover:
		return "discover"
	case dhcpv4.MessageTypeOffer:
		return "offer"
	case dhcpv4.MessageTypeRequest:
		return "request"
	case dhcpv4.MessageTypeDecline:
		return "decline"
	case dhcpv4.MessageTypeAck:
		return "ack"
	case dhcpv4.MessageTypeNak:
		return "nak"
	case dhcpv4.MessageTypeRelease:
		return "release"
	case dhcpv4.MessageTypeInform:
		return "inform"
	}
	return "other"
}
