package masq

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/masqnet/masq/dhcp"
	"github.com/masqnet/masq/link"
	"github.com/masqnet/masq/ports"
)

// MinMTU and MaxMTU bound Config.MTU: IPv4's minimum datagram size (as
// dhcp defines it: the guest learns its MTU from DHCP option 26), and the
// largest MTU a Linux tap carries unfragmented (64 KiB less headers).
const (
	MinMTU = dhcp.MinMTU
	MaxMTU = 65520
)

// minIPv6MTU is IPv6's minimum link MTU (RFC 8200 §5).
const minIPv6MTU = 1280

// Config is everything Run needs, as plain values. The command line fills
// it; Validate checks it once, and nothing after that re-parses a string.
// The zero value is not useful: start from DefaultConfig.
type Config struct {
	// Tap is the name of the guest's tap device: created when it does not
	// exist, attached to when it does. Ignored when TapFD is set.
	Tap string

	// GuestNetns is the path of the network namespace the tap lives in
	// (e.g. /run/netns/guest). Empty means masq's own namespace.
	GuestNetns string

	// TapFD is an inherited, already open tap file descriptor; -1 means
	// none. Run takes ownership of it.
	TapFD int

	// Attach, when set, is an existing interface whose other end is the
	// guest (the kernel side of QEMU's tap, one end of a veth), in
	// GuestNetns: masq reads and writes it with an AF_PACKET socket
	// (CAP_NET_RAW). Tap and TapFD are then ignored.
	Attach string

	// Socket, when not zero, is the guest's link instead of a tap: a unix
	// socket path or a TCP address where masq listens for QEMU's stream
	// netdev (see link.Socket). With a TCP port, that port is never
	// forwarded to the guest. Tap is then ignored.
	Socket link.SocketAddr

	// SocketMode is the unix socket file's permission bits; 0 means 0600.
	SocketMode fs.FileMode

	// VhostUser, when set, is the guest's link instead of a tap: a unix
	// socket path where masq listens as the vhost-user back-end of QEMU's
	// virtio-net device (see vhostuser.Endpoint), the file made with
	// SocketMode. Tap is then ignored.
	VhostUser string

	// PodInterface is the pod's interface whose MTU the guest gets. Empty
	// means the interface of the default route.
	PodInterface string

	// MTU is the guest link's MTU, MinMTU..MaxMTU; 0 means the pod
	// interface's MTU (capped at MaxMTU).
	MTU uint32

	// VMCIDR is the guest's IPv4 network (KubeVirt's vmNetworkCIDR): the
	// gateway is its first host address, the guest its second.
	VMCIDR netip.Prefix

	// VMIPv6CIDR is the guest's IPv6 network (KubeVirt's
	// vmIPv6NetworkCIDR), addressed the same way. The zero Prefix turns
	// IPv6 off.
	VMIPv6CIDR netip.Prefix

	// NoRA turns the gateway's Router Advertisements off: an IPv6 guest
	// then needs its default route configured statically. DHCPv6 is on
	// whenever IPv6 is.
	NoRA bool

	// RAInterval is the longest time between unsolicited Router
	// Advertisements (MaxRtrAdvInterval), 4s..1800s (RFC 4861 §6.2.1);
	// 0 means dhcp.DefaultRAInterval.
	RAInterval time.Duration

	// GuestMAC, when set, is the only client DHCP answers.
	GuestMAC net.HardwareAddr

	// Hostname is sent to the guest in DHCP; empty means the pod's.
	Hostname string

	// ResolvConf is the path of the resolv.conf whose nameservers and
	// search domains the guest gets.
	ResolvConf string

	// NoOffload keeps the tap to plain frames, one per system call, instead
	// of virtio-net headers with checksum and TSO offloads.
	NoOffload bool

	// Ports are the pod ports forwarded to the same port of the guest.
	// Nil forwards every port but 49152 and 49153 (libvirt's), the pod's
	// ephemeral range and ports something else in the pod holds, as
	// KubeVirt does when a masquerade interface lists no ports.
	Ports *ports.Set

	// AllowGatewayToPod lets the guest reach the pod's loopback services
	// through the gateway's address: gateway:P is forwarded to
	// 127.0.0.1:P (::1:P for IPv6). Off, such connections are refused.
	AllowGatewayToPod bool

	// Pod is how flows reach the world; nil means the kernel's sockets
	// in masq's own network namespace. Tests and embedders inject their
	// own.
	Pod Pod

	// Logger receives one line per event. Nil means slog.Default().
	Logger *slog.Logger

	// PCAP, when set, is a file (created, or truncated; mode 0600) into
	// which masq records every frame on the guest's link, both ways, from
	// start to stop, as pcap (see package capture), up to PCAPMaxBytes.
	PCAP string

	// PCAPMaxBytes caps each packet capture, PCAP's and each live one's:
	// at least capture.MinMaxBytes; 0 means DefaultPCAPMaxBytes.
	PCAPMaxBytes int64

	// Ready, when set, is called once, when the guest's link and every
	// service are up (a --socket listens): an embedder starting the guest
	// afterwards (KubeVirt's sidecar) waits for it.
	Ready func()

	// Control, when set, is the path of the control socket (mode 0600):
	// HTTP with JSON serving /status, /flows, /metrics, /healthz and
	// /readyz (package control). Empty means none.
	Control string

	// Metrics, when set, is a TCP address ("127.0.0.1:9090", ":9090")
	// serving Prometheus's /metrics, /healthz and /readyz. Empty means
	// none.
	Metrics string

	// ControlHandlers are further handlers on the control socket, by
	// http.ServeMux pattern (e.g. "POST /pcap").
	ControlHandlers map[string]http.Handler

	// Version is the build's version, which /status and
	// masq_build_info report.
	Version string

	// Confine, when set, confines the whole process once setup is
	// complete (the guest's link open, namespaces entered, forwarded
	// ports bound): every capability dropped on every thread,
	// no_new_privs, a seccomp allowlist (package internal/sandbox);
	// CAP_NET_RAW alone is kept when guest pings go through raw ICMP
	// sockets (the pod gives no ping socket), which need it. It
	// cannot be undone, so the command line sets it and an embedder whose
	// process does other work leaves it off. Run fails, having closed
	// everything, when the process cannot be confined.
	Confine bool

	// NoSeccomp, with Confine, installs no seccomp filter (capabilities
	// and no_new_privs still go): for debugging a call the filter
	// refuses.
	NoSeccomp bool

	// NoRawPing: guest pings go through the pod's ping sockets only,
	// never raw ICMP sockets, so a confined masq keeps no capability at
	// all, even where net.ipv4.ping_group_range gives it no ping socket
	// (guest pings to the world then go unanswered).
	NoRawPing bool

	// SeccompCrash, with Confine, makes a system call outside the
	// allowlist crash masq with SIGSYS and the calling goroutine's stack
	// instead of failing with EPERM (the production behaviour): the tests
	// run so, to prove the allowlist covers every path they take.
	SeccompCrash bool
}

// DefaultConfig returns KubeVirt's defaults: tap0 in masq's own namespace,
// 10.0.2.0/24 and fd10:0:2::/120, MTU and hostname from the pod.
func DefaultConfig() Config {
	return Config{
		Tap:        "tap0",
		TapFD:      -1,
		VMCIDR:     netip.MustParsePrefix("10.0.2.0/24"),
		VMIPv6CIDR: netip.MustParsePrefix("fd10:0:2::/120"),
		ResolvConf: "/etc/resolv.conf",
	}
}

// Validate checks c without touching the system and says, for the first
// problem found, which flag is wrong and what is allowed. Checks that need
// the system (does the namespace exist?) happen in Run before anything
// starts.
func (c Config) Validate() error {
	checks := []func() error{
		c.validateLink, c.validateMTU, c.validateNetworks, c.validateHostname, c.validateRA,
		c.validatePCAP,
	}
	for _, check := range checks {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

func (c Config) validateLink() error {
	if c.VhostUser != "" {
		if err := c.validateVhostUser(); err != nil {
			return err
		}
		return c.validatePodInterface()
	}
	if c.Attach != "" && !c.Socket.IsZero() {
		return errors.New("--attach and --socket exclude each other: attach an interface or listen for QEMU")
	}
	if c.Attach != "" {
		if c.TapFD >= 0 {
			return errors.New("--attach and --tap-fd exclude each other: attach an interface or pass a tap's fd")
		}
		if err := validIfName(c.Attach); err != nil {
			return fmt.Errorf("--attach %q: %w", c.Attach, err)
		}
		return c.validatePodInterface()
	}
	if !c.Socket.IsZero() {
		if err := c.validateSocket(); err != nil {
			return err
		}
		return c.validatePodInterface()
	}
	if c.TapFD >= 0 {
		if c.GuestNetns != "" {
			return errors.New("--guest-netns cannot be used with --tap-fd: an inherited fd is already bound to its tap")
		}
		return nil
	}
	if c.TapFD < -1 {
		return fmt.Errorf("--tap-fd %d: must be an open file descriptor number (0 or more)", c.TapFD)
	}
	if err := validIfName(c.Tap); err != nil {
		return fmt.Errorf("--tap %q: %w", c.Tap, err)
	}
	return c.validatePodInterface()
}

func (c Config) validatePodInterface() error {
	if c.PodInterface != "" {
		if err := validIfName(c.PodInterface); err != nil {
			return fmt.Errorf("--pod-interface %q: %w", c.PodInterface, err)
		}
	}
	return nil
}

// validateSocket checks a set Socket against the other fields; an error
// names the flags.
func (c Config) validateSocket() error {
	a := c.Socket
	switch {
	case c.TapFD >= 0:
		return errors.New("--tap-fd and --socket exclude each other: pass a tap's fd or listen for QEMU")
	case c.GuestNetns != "":
		return errors.New("--guest-netns cannot be used with --socket: it names the tap's namespace, and a socket has none")
	case c.SocketMode&^fs.ModePerm != 0:
		return fmt.Errorf("--socket-mode %o: permission bits only (0 to 0777)", c.SocketMode)
	case a.IsTCP() && c.Ports != nil && a.TCP.Port() != 0 &&
		(c.Ports.Contains(ports.TCP, a.TCP.Port())):
		return fmt.Errorf("--ports forwards %d/tcp, which --socket %s listens on; drop it from --ports or listen on another port", a.TCP.Port(), a)
	}
	return nil
}

// validateVhostUser checks a set VhostUser against the other fields; an
// error names the flags.
func (c Config) validateVhostUser() error {
	switch {
	case !c.Socket.IsZero():
		return errors.New("--vhost-user and --socket exclude each other: the guest has one link")
	case c.Attach != "":
		return errors.New("--vhost-user and --attach exclude each other: the guest has one link")
	case c.TapFD >= 0:
		return errors.New("--vhost-user and --tap-fd exclude each other: the guest has one link")
	case c.GuestNetns != "":
		return errors.New("--guest-netns cannot be used with --vhost-user: it names the tap's namespace, and a socket has none")
	case c.SocketMode&^fs.ModePerm != 0:
		return fmt.Errorf("--socket-mode %o: permission bits only (0 to 0777)", c.SocketMode)
	}
	return nil
}

// validIfName checks a Linux interface name: 1 to 15 bytes, no '/', no
// white space, not "." or "..".
func validIfName(name string) error {
	switch {
	case name == "" || len(name) > 15:
		return errors.New("an interface name is 1 to 15 characters")
	case name == "." || name == ".." || strings.ContainsAny(name, "/: \t\n"):
		return errors.New("an interface name cannot be . or .. or contain '/', ':' or white space")
	}
	return nil
}

func (c Config) validateMTU() error {
	if c.MTU == 0 {
		return nil
	}
	if c.MTU < MinMTU || c.MTU > MaxMTU {
		return fmt.Errorf("--mtu %d: must be between %d and %d", c.MTU, MinMTU, MaxMTU)
	}
	if c.VMIPv6CIDR.IsValid() && c.MTU < minIPv6MTU {
		return fmt.Errorf("--mtu %d: IPv6 needs at least %d; raise --mtu or turn IPv6 off with --vm-ipv6-cidr=\"\"", c.MTU, minIPv6MTU)
	}
	return nil
}

func (c Config) validateNetworks() error {
	if err := validNetwork("--vm-cidr", c.VMCIDR, true); err != nil {
		return err
	}
	if !c.VMIPv6CIDR.IsValid() {
		return nil
	}
	return validNetwork("--vm-ipv6-cidr", c.VMIPv6CIDR, false)
}

// validNetwork checks that p is a network of the right family, given by its
// network address, with room for a network, gateway, guest and one more
// address (KubeVirt's rule: at least 4 addresses).
func validNetwork(flag string, p netip.Prefix, v4 bool) error {
	family, maxBits := "IPv6", 126
	if v4 {
		family, maxBits = "IPv4", 30
	}
	switch {
	case !p.IsValid():
		return fmt.Errorf("%s: an %s network in CIDR form is required", flag, family)
	case p.Addr().Is4() != v4 || p.Addr().Is4In6():
		return fmt.Errorf("%s %s: must be an %s network", flag, p, family)
	case p.Bits() > maxBits:
		return fmt.Errorf("%s %s: must hold at least 4 addresses (prefix length at most /%d)", flag, p, maxBits)
	case p.Masked() != p:
		return fmt.Errorf("%s %s: host bits are set; did you mean %s?", flag, p, p.Masked())
	}
	return nil
}

// RA interval bounds: RFC 4861 §6.2.1's MaxRtrAdvInterval range.
const (
	minRAInterval = 4 * time.Second
	maxRAInterval = 1800 * time.Second
)

func (c Config) validateRA() error {
	if c.RAInterval != 0 && (c.RAInterval < minRAInterval || c.RAInterval > maxRAInterval) {
		return fmt.Errorf("--ra-interval %v: must be between %v and %v (RFC 4861)", c.RAInterval, minRAInterval, maxRAInterval)
	}
	return nil
}

func (c Config) validateHostname() error {
	if c.Hostname == "" {
		return nil
	}
	if err := validHostname(c.Hostname); err != nil {
		return fmt.Errorf("--hostname %q: %w", c.Hostname, err)
	}
	return nil
}

// validHostname accepts what a DHCP client can set as its host name: DNS
// labels of letters, digits and '-', separated by dots, 253 bytes at most.
func validHostname(name string) error {
	if len(name) > 253 {
		return errors.New("at most 253 characters")
	}
	for _, label := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		if label == "" || len(label) > 63 {
			return errors.New("each dot-separated label is 1 to 63 characters")
		}
		for _, r := range label {
			if !(r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
				return fmt.Errorf("character %q not allowed (letters, digits, '-' and '.')", r)
			}
		}
	}
	return nil
}

// gateway and guest return the first and second host addresses of p.
func gateway(p netip.Prefix) netip.Addr { return p.Addr().Next() }
func guest(p netip.Prefix) netip.Addr   { return p.Addr().Next().Next() }
