package masq

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/masqnet/masq/link"
	"github.com/masqnet/masq/ports"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(*Config)
		wantErr string // empty: valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"mtu jumbo", func(c *Config) { c.MTU = 9000 }, ""},
		{"mtu max", func(c *Config) { c.MTU = MaxMTU }, ""},
		{"mtu over max", func(c *Config) { c.MTU = 70000 }, "--mtu 70000: must be between 68 and 65520"},
		{"mtu under min", func(c *Config) { c.MTU = 67 }, "--mtu 67"},
		{"mtu too small for ipv6", func(c *Config) { c.MTU = 1000 }, "IPv6 needs at least 1280"},
		{"small mtu without ipv6", func(c *Config) { c.MTU = 576; c.VMIPv6CIDR = netip.Prefix{} }, ""},
		{"cidr /30 holds 4", func(c *Config) { c.VMCIDR = netip.MustParsePrefix("192.168.7.0/30") }, ""},
		{"cidr /31 too small", func(c *Config) { c.VMCIDR = netip.MustParsePrefix("10.0.2.0/31") }, "--vm-cidr 10.0.2.0/31: must hold at least 4 addresses"},
		{"cidr host bits", func(c *Config) { c.VMCIDR = netip.MustParsePrefix("10.0.2.5/24") }, "did you mean 10.0.2.0/24"},
		{"cidr ipv6 in v4 flag", func(c *Config) { c.VMCIDR = netip.MustParsePrefix("fd00::/64") }, "--vm-cidr fd00::/64: must be an IPv4 network"},
		{"cidr missing", func(c *Config) { c.VMCIDR = netip.Prefix{} }, "--vm-cidr: an IPv4 network"},
		{"ipv6 /127 too small", func(c *Config) { c.VMIPv6CIDR = netip.MustParsePrefix("fd10::/127") }, "--vm-ipv6-cidr fd10::/127: must hold at least 4"},
		{"ipv6 flag given ipv4", func(c *Config) { c.VMIPv6CIDR = netip.MustParsePrefix("10.0.0.0/8") }, "--vm-ipv6-cidr 10.0.0.0/8: must be an IPv6 network"},
		{"ipv6 off", func(c *Config) { c.VMIPv6CIDR = netip.Prefix{} }, ""},
		{"ra interval min", func(c *Config) { c.RAInterval = 4 * time.Second }, ""},
		{"ra interval max", func(c *Config) { c.RAInterval = 30 * time.Minute }, ""},
		{"ra interval too short", func(c *Config) { c.RAInterval = time.Second }, "--ra-interval 1s: must be between 4s and 30m0s"},
		{"ra interval too long", func(c *Config) { c.RAInterval = time.Hour }, "--ra-interval 1h0m0s"},
		{"tap empty", func(c *Config) { c.Tap = "" }, `--tap "": an interface name is 1 to 15`},
		{"tap too long", func(c *Config) { c.Tap = "abcdefghijklmnop" }, "--tap"},
		{"tap slash", func(c *Config) { c.Tap = "a/b" }, "cannot be . or .. or contain '/'"},
		{"tap fd", func(c *Config) { c.TapFD = 3 }, ""},
		{"tap fd negative", func(c *Config) { c.TapFD = -2 }, "--tap-fd -2"},
		{"tap fd with netns", func(c *Config) { c.TapFD = 3; c.GuestNetns = "/run/netns/x" }, "--guest-netns cannot be used with --tap-fd"},
		{"socket path", func(c *Config) { c.Socket = link.SocketAddr{Path: "/run/masq/vm.sock"} }, ""},
		{"socket tcp", func(c *Config) { c.Socket = link.SocketAddr{TCP: netip.MustParseAddrPort("127.0.0.1:5555")} }, ""},
		{"socket with tap fd", func(c *Config) { c.Socket = link.SocketAddr{Path: "/s"}; c.TapFD = 3 }, "--tap-fd and --socket exclude each other"},
		{"vhost-user", func(c *Config) { c.VhostUser = "/run/masq/vhost.sock" }, ""},
		{"vhost-user with socket", func(c *Config) { c.VhostUser = "/v"; c.Socket = link.SocketAddr{Path: "/s"} }, "--vhost-user and --socket exclude each other"},
		{"vhost-user with attach", func(c *Config) { c.VhostUser = "/v"; c.Attach = "veth0" }, "--vhost-user and --attach exclude each other"},
		{"vhost-user with tap fd", func(c *Config) { c.VhostUser = "/v"; c.TapFD = 3 }, "--vhost-user and --tap-fd exclude each other"},
		{"vhost-user with netns", func(c *Config) { c.VhostUser = "/v"; c.GuestNetns = "/run/netns/x" }, "--guest-netns cannot be used with --vhost-user"},
		{"vhost-user mode bits", func(c *Config) { c.VhostUser = "/v"; c.SocketMode = 0o4700 }, "--socket-mode"},
		{"socket with netns", func(c *Config) { c.Socket = link.SocketAddr{Path: "/s"}; c.GuestNetns = "/run/netns/x" }, "--guest-netns cannot be used with --socket"},
		{"socket mode bits", func(c *Config) { c.Socket = link.SocketAddr{Path: "/s"}; c.SocketMode = 0o4700 }, "--socket-mode"},
		{"socket port forwarded", func(c *Config) {
			c.Socket = link.SocketAddr{TCP: netip.MustParseAddrPort("127.0.0.1:5555")}
			c.Ports = portSet(t, "5000-6000")
		}, "--ports forwards 5555/tcp, which --socket tcp:127.0.0.1:5555 listens on"},
		{"socket port udp only", func(c *Config) {
			c.Socket = link.SocketAddr{TCP: netip.MustParseAddrPort("127.0.0.1:5555")}
			c.Ports = portSet(t, "5555/udp")
		}, ""},
		{"pod interface bad", func(c *Config) { c.PodInterface = "eth 0" }, "--pod-interface"},
		{"attach", func(c *Config) { c.Attach = "veth0"; c.GuestNetns = "/run/netns/x" }, ""},
		{"attach bad name", func(c *Config) { c.Attach = "a/b" }, `--attach "a/b"`},
		{"attach with tap fd", func(c *Config) { c.Attach = "veth0"; c.TapFD = 3 }, "--attach and --tap-fd exclude each other"},
		{"attach pod interface bad", func(c *Config) { c.Attach = "veth0"; c.PodInterface = "eth 0" }, "--pod-interface"},
		{"hostname ok", func(c *Config) { c.Hostname = "vm-1.example.com" }, ""},
		{"hostname bad char", func(c *Config) { c.Hostname = "vm_1" }, `--hostname "vm_1": character '_' not allowed`},
		{"hostname empty label", func(c *Config) { c.Hostname = "a..b" }, "--hostname"},
		{"hostname long label", func(c *Config) { c.Hostname = strings.Repeat("a", 64) }, "1 to 63"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.mod(&c)
			err := c.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("Validate() = nil, want error containing %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("Validate() = %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

// portSet parses a --ports spec.
func portSet(t *testing.T, spec string) *ports.Set {
	t.Helper()
	s, err := ports.Parse(spec)
	if err != nil {
		t.Fatal(err)
	}
	return &s
}

func TestSocketPortNeverForwarded(t *testing.T) {
	c := DefaultConfig()
	c.Socket = link.SocketAddr{TCP: netip.MustParseAddrPort("127.0.0.1:5555")}
	got, err := ownPorts(c)
	if err != nil || got.String() != "5555/tcp" {
		t.Fatalf("ownPorts = %q, %v; want 5555/tcp", got, err)
	}
	c.Socket = link.SocketAddr{Path: "/run/masq/vm.sock"}
	if got, err := ownPorts(c); err != nil || got.Len() != 0 {
		t.Fatalf("unix socket: ownPorts = %q, %v; want none", got, err)
	}
}

// TestMetricsPortNeverForwarded: forwarding every port must leave
// --metrics's port to masq's own listener.
func TestMetricsPortNeverForwarded(t *testing.T) {
	c := DefaultConfig()
	c.Socket = link.SocketAddr{TCP: netip.MustParseAddrPort("127.0.0.1:5555")}
	c.Metrics = ":9464"
	if got, err := ownPorts(c); err != nil || got.String() != "5555/tcp,9464/tcp" {
		t.Fatalf("ownPorts = %q, %v; want 5555/tcp,9464/tcp", got, err)
	}
	c.Metrics = "127.0.0.1:http"
	if _, err := ownPorts(c); err == nil {
		t.Fatal("ownPorts with a named --metrics port: no error")
	}
}

func TestGatewayAndGuestAddresses(t *testing.T) {
	tests := []struct{ cidr, gw, guest string }{
		{"10.0.2.0/24", "10.0.2.1", "10.0.2.2"},
		{"192.168.100.0/30", "192.168.100.1", "192.168.100.2"},
		{"fd10:0:2::/120", "fd10:0:2::1", "fd10:0:2::2"},
	}
	for _, tt := range tests {
		p := netip.MustParsePrefix(tt.cidr)
		if got := gateway(p).String(); got != tt.gw {
			t.Errorf("gateway(%s) = %s, want %s", tt.cidr, got, tt.gw)
		}
		if got := guest(p).String(); got != tt.guest {
			t.Errorf("guest(%s) = %s, want %s", tt.cidr, got, tt.guest)
		}
	}
}
