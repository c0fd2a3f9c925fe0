package inbound

import (
	"errors"
	"log/slog"
	"net/netip"
	"time"

	"github.com/masqnet/masq/flowtable"
	"github.com/masqnet/masq/internal/relay"
	"github.com/masqnet/masq/ports"
)

// Defaults for Config's zero fields.
const (
	// DefaultDialTimeout bounds the connect into the guest of an inbound
	// connection: a guest that does not answer at all (not even with a
	// RST) costs its client at most this long before the client's
	// connection is reset.
	DefaultDialTimeout = 10 * time.Second

	// DefaultMaxUDPFlows bounds the inbound UDP flows (client address and
	// port), each a route to the guest: as many as the guest's own.
	DefaultMaxUDPFlows = 8192

	// DefaultUDPIdleTimeout ends an inbound UDP flow without traffic, as
	// the kernel's conntrack does for an assured stream (120 s).
	DefaultUDPIdleTimeout = 120 * time.Second

	// DefaultMaxTCP bounds the forwarded TCP connections when Config has
	// no TCPLimit shared with the outbound flows.
	DefaultMaxTCP = 32768
)

// Config configures a Forwarder. Zero fields take the defaults above.
type Config struct {
	// Ports lists the pod ports forwarded to the same port of the guest;
	// nil forwards every port but 49152, 49153, the pod's ephemeral range
	// and ports something else holds (KubeVirt's "no ports listed").
	Ports *ports.Set
	// Except are ports masq itself holds (the guest link's TCP port):
	// never forwarded, even when Ports is nil.
	Except ports.Set

	// Guest4 and Guest6 are the guest's addresses, where connections go;
	// either may be the zero Addr when its family is off, not both.
	Guest4, Guest6 netip.Addr
	// Gateway4 and Gateway6 are the gateway's addresses: a client on the
	// pod's own loopback reaches the guest from the gateway of its family
	// (or of the other, when that one is off).
	Gateway4, Gateway6 netip.Addr

	// Pod opens the forwarded ports' sockets; nil means KernelPod.
	Pod Pod
	// DialTimeout bounds the connect into the guest.
	DialTimeout time.Duration
	// MaxUDPFlows bounds inbound UDP flows; datagrams of more clients
	// are dropped and counted.
	MaxUDPFlows int
	// UDPIdleTimeout ends idle inbound UDP flows.
	UDPIdleTimeout time.Duration
	// TCPLimit is the bound on TCP connections shared with the outbound
	// flows; nil means one of DefaultMaxTCP for inbound alone.
	TCPLimit *relay.Limit
	// Pool lends the copy buffers; nil means a pool of its own.
	Pool *relay.Pool
	// Now is the clock of idle timeouts; nil means time.Now.
	Now func() time.Time
	// Logger logs one line per event; nil discards.
	Logger *slog.Logger
	// Flows is the flow table the forwarded flows are listed and counted
	// in; nil means a table of its own.
	Flows *flowtable.Table
}

// withDefaults fills the zero fields of c and checks what must be set.
func (c Config) withDefaults() (Config, error) {
	if !c.Guest4.IsValid() && !c.Guest6.IsValid() {
		return c, errors.New("inbound: no guest address")
	}
	if c.Pod == nil {
		c.Pod = KernelPod{}
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.MaxUDPFlows <= 0 {
		c.MaxUDPFlows = DefaultMaxUDPFlows
	}
	if c.UDPIdleTimeout <= 0 {
		c.UDPIdleTimeout = DefaultUDPIdleTimeout
	}
	if c.TCPLimit == nil {
		c.TCPLimit = relay.NewLimit(DefaultMaxTCP)
	}
	if c.Pool == nil {
		c.Pool = relay.NewPool()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Flows == nil {
		c.Flows = flowtable.New(c.Now)
	}
	return c, nil
}
