package dhcp

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// maxPacketSize is the size of Serve's one read buffer: the largest UDP
// payload. DHCP messages are a few hundred bytes, but 64 KiB once per
// server costs nothing and no datagram is ever truncated.
const maxPacketSize = 65535

// Server is a stateless DHCPv4 server for one guest. NewServer makes it;
// it never changes afterwards, so Reply is safe for concurrent use.
type Server struct {
	serverIP netip.Addr
	guestIP  netip.Addr
	guestMAC net.HardwareAddr
	opts     optionSets
	log      *slog.Logger
	stats    *stats
	leaseFor time.Duration // the lease time granted, for Stats

	// broadcast is where Serve sends what destination broadcasts:
	// limitedBroadcast() in production, a loopback socket in tests.
	broadcast netip.AddrPort
}

// NewServer checks cfg and precomputes every reply's options. A nil log
// discards the server's log lines.
func NewServer(cfg Config, log *slog.Logger) (*Server, error) {
	opts, err := compile(cfg)
	if err != nil {
		return nil, fmt.Errorf("dhcp config: %w", err)
	}
	lease, err := leaseTime(cfg.LeaseTime)
	if err != nil {
		return nil, fmt.Errorf("dhcp config: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{
		serverIP:  cfg.ServerIP,
		guestIP:   cfg.GuestIP,
		guestMAC:  cfg.GuestMAC,
		opts:      opts,
		log:       log,
		stats:     new(stats),
		leaseFor:  lease,
		broadcast: limitedBroadcast(),
	}, nil
}

// Serve answers the DHCPv4 requests that arrive on conn until ctx ends,
// then returns nil. Serve takes ownership of conn: it has closed it when it
// returns, and it leaves no goroutine behind. A read error other than the
// one ctx's end causes is returned, wrapped.
//
// conn must be bound to port 67 on the guest-facing stack and allowed to
// send broadcast (SO_BROADCAST; on a gVisor endpoint,
// ep.SocketOptions().SetBroadcast(true) before gonet.NewUDPConn): replies
// to a client without an address go to 255.255.255.255:68.
// Packets are handled one at a time in one reused buffer.
func (s *Server) Serve(ctx context.Context, conn net.PacketConn) error {
	return serveDatagrams(ctx, conn, "dhcp", func(pkt []byte, from net.Addr) { s.handle(conn, pkt, from) })
}

// serveDatagrams hands each datagram read from conn to handle, one at a
// time in one reused buffer, until ctx ends (it then closes conn and
// returns nil) or reading fails (it closes conn and returns the error,
// prefixed by what). Both DHCP servers serve this way.
func serveDatagrams(ctx context.Context, conn net.PacketConn, what string, handle func(pkt []byte, from net.Addr)) error {
	closed := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		conn.Close()
		close(closed)
	})
	defer func() {
		if !stop() {
			<-closed // ctx ended: wait until the closing goroutine is done
		}
	}()
	buf := make([]byte, maxPacketSize)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			conn.Close()
			return fmt.Errorf("%s: reading requests: %w", what, err)
		}
		handle(buf[:n], from)
	}
}

// handle answers one datagram.
func (s *Server) handle(conn net.PacketConn, pkt []byte, from net.Addr) {
	req, err := dhcpv4.FromBytes(pkt)
	if err != nil {
		s.log.Debug("dhcp: unparsable packet", "from", from, "len", len(pkt), "err", err)
		s.stats.ignored.Add(1)
		return
	}
	reply := s.Reply(req)
	s.logEvent(req, reply)
	s.stats.count(req, reply, s.accepts(req), s.leaseFor)
	if reply == nil {
		return
	}
	dst := destination(req, reply)
	if dst == limitedBroadcast() {
		dst = s.broadcast
	}
	if _, err := conn.WriteTo(reply.ToBytes(), net.UDPAddrFromAddrPort(dst)); err != nil {
		s.log.Warn("dhcp: sending reply", "to", dst, "xid", req.TransactionID.String(), "err", err)
	}
}

// logEvent logs one line for what req and its reply mean to the lease.
func (s *Server) logEvent(req, reply *dhcpv4.DHCPv4) {
	attrs := []any{"mac", req.ClientHWAddr.String(), "xid", req.TransactionID.String()}
	if !s.accepts(req) {
		s.log.Debug("dhcp: ignored: not the guest's request", attrs...)
		return
	}
	if reply == nil {
		s.logUnanswered(req, attrs)
		return
	}
	switch yiaddr := addr4(reply.YourIPAddr); reply.MessageType() {
	case dhcpv4.MessageTypeOffer:
		s.log.Debug("dhcp: offer", append(attrs, "ip", yiaddr)...)
	case dhcpv4.MessageTypeNak:
		s.log.Info("dhcp: nak: guest asked for another address", append(attrs, "ip", requested(req))...)
	case dhcpv4.MessageTypeAck:
		if yiaddr.IsUnspecified() {
			s.log.Debug("dhcp: inform ack", append(attrs, "ip", addr4(req.ClientIPAddr))...)
			return
		}
		s.log.Info("dhcp: ack", append(attrs, "ip", yiaddr)...)
	}
}

// logUnanswered logs a request of the guest's that gets no reply.
func (s *Server) logUnanswered(req *dhcpv4.DHCPv4, attrs []any) {
	switch t := req.MessageType(); t {
	case dhcpv4.MessageTypeRelease:
		s.log.Info("dhcp: release", append(attrs, "ip", addr4(req.ClientIPAddr))...)
	case dhcpv4.MessageTypeDecline:
		s.log.Info("dhcp: decline: guest says its address is in use", append(attrs, "ip", requested(req))...)
	default:
		s.log.Debug("dhcp: ignored", append(attrs, "type", t.String())...)
	}
}
