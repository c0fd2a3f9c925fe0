package inbound_test

import (
	"net/netip"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/masqnet/masq/inbound"
	"github.com/masqnet/masq/internal/memguest"
	"github.com/masqnet/masq/link"
	"github.com/masqnet/masq/ports"
	"github.com/masqnet/masq/stack"
)

// budgetPod is a pod whose ephemeral range leaves ports 1-99 to forward
// and that runs out of descriptors (EMFILE) after limit sockets. Its
// sockets are unbound: no port of the machine is taken.
type budgetPod struct {
	mu    sync.Mutex
	limit int
	order []string // the ports Listen was asked for, "P/proto"
}

// Listen implements inbound.Pod.
func (p *budgetPod) Listen(proto ports.Protocol, _ inbound.Family, port uint16) (*inbound.Socket, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.order) >= p.limit {
		return nil, syscall.EMFILE
	}
	p.order = append(p.order, ports.Range{Proto: proto, First: port, Last: port}.String())
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return inbound.NewSocket(fd), nil
}

// EphemeralPorts implements inbound.Pod: 100 and up are the pod's.
func (p *budgetPod) EphemeralPorts() (uint16, uint16, error) { return 100, 65535, nil }

// TestAllPortsTCPFirst: forwarding every port with too few descriptors
// for all of them binds TCP for every port before UDP for any, each
// lowest first, and Forwarded says exactly which.
func TestAllPortsTCPFirst(t *testing.T) {
	for _, tt := range []struct {
		limit int
		want  string
	}{
		{limit: 10, want: "1-10/tcp"},
		{limit: 120, want: "1-99/tcp,1-21/udp"},
		{limit: 1000, want: "1-99/tcp,1-99/udp"},
	} {
		pod := &budgetPod{limit: tt.limit}
		_, fd := memguest.New(t, 1500)
		ep, err := link.NewFD(fd, 1500, nil)
		if err != nil {
			t.Fatal(err)
		}
		st, err := stack.New(ep, stack.Config{MTU: 1500, IPv4: netip.PrefixFrom(gw4, 24)})
		if err != nil {
			t.Fatal(err)
		}
		fwd, err := inbound.New(st, inbound.Config{Guest4: guest4.Addr(), Gateway4: gw4, Pod: pod})
		if err != nil {
			t.Fatalf("limit %d: %v", tt.limit, err)
		}
		if got := fwd.Forwarded().String(); got != tt.want {
			t.Errorf("limit %d: forwarded %q, want %q", tt.limit, got, tt.want)
		}
		if n := min(tt.limit, 198); len(pod.order) < 2 || pod.order[0] != "1/tcp" || len(pod.order) != n {
			t.Errorf("limit %d: %d ports asked for, from %q; want %d from 1/tcp", tt.limit, len(pod.order), pod.order[0], n)
		}
		fwd.Close()
		st.Close()
		unix.Close(fd)
	}
}
