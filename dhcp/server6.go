package dhcp

import (
	"context"
	"log/slog"
	"net"
	"sync/atomic"

	"github.com/insomniacslk/dhcp/dhcpv6"
)

// Stats6 counts what the DHCPv6 server dropped. Safe for concurrent use.
type Stats6 struct {
	// Malformed counts datagrams that do not parse as a DHCPv6 client
	// message (relay messages included: masq is the guest's only link).
	Malformed atomic.Uint64
}

// Stats returns the server's counters, live.
func (s *Server6) Stats() *Stats6 { return s.stats }

// orDiscard is log, or a logger that discards when log is nil.
func orDiscard(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return log
}

// Serve answers the DHCPv6 messages that arrive on conn until ctx ends,
// then returns nil, as Server.Serve does for DHCPv4: it takes ownership
// of conn and leaves no goroutine behind. conn must be bound to [::]:547
// on the guest-facing stack, whose NIC has joined AllDHCPServers.
// Replies go back to the sender's address and port (RFC 8415 §18.3.10).
func (s *Server6) Serve(ctx context.Context, conn net.PacketConn) error {
	return serveDatagrams(ctx, conn, "dhcpv6", func(pkt []byte, from net.Addr) { s.handle(conn, pkt, from) })
}

// handle answers one datagram.
func (s *Server6) handle(conn net.PacketConn, pkt []byte, from net.Addr) {
	req, err := dhcpv6.MessageFromBytes(pkt)
	if err != nil {
		s.stats.Malformed.Add(1)
		s.log.Debug("dhcpv6: unparsable packet", "from", from, "len", len(pkt), "err", err)
		return
	}
	reply := s.Reply(req)
	s.logEvent(req, reply)
	if reply == nil {
		return
	}
	if _, err := conn.WriteTo(reply.ToBytes(), from); err != nil {
		s.log.Warn("dhcpv6: sending reply", "to", from, "xid", req.TransactionID.String(), "err", err)
	}
}

// logEvent logs one line for what req and its reply mean to the guest.
func (s *Server6) logEvent(req, reply *dhcpv6.Message) {
	attrs := []any{"type", req.MessageType.String(), "xid", req.TransactionID.String()}
	if c := req.Options.ClientID(); c != nil {
		attrs = append(attrs, "duid", c.String())
	}
	switch {
	case reply == nil:
		s.log.Debug("dhcpv6: ignored", attrs...)
	case req.MessageType == dhcpv6.MessageTypeRelease:
		s.log.Info("dhcpv6: release", attrs...)
	case req.MessageType == dhcpv6.MessageTypeDecline:
		s.log.Info("dhcpv6: decline: guest says its address is in use", append(attrs, "ip", s.guestIP)...)
	case reply.MessageType == dhcpv6.MessageTypeReply && len(reply.Options.IANA()) > 0:
		s.log.Info("dhcpv6: reply", append(attrs, "ip", s.guestIP)...)
	default:
		s.log.Debug("dhcpv6: answered", append(attrs, "reply", reply.MessageType.String())...)
	}
}
