package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/masqnet/masq"
	"github.com/masqnet/masq/dhcp"
	"github.com/masqnet/masq/kubevirt"
	"github.com/masqnet/masq/link"
	"github.com/masqnet/masq/ports"
)

// runFlags holds the raw values of `masq run`'s flags.
type runFlags struct {
	tap          string
	guestNetns   string
	tapFD        int
	attach       string
	socket       string
	socketMode   string
	vhostUser    string
	podInterface string
	mtu          uint32
	vmCIDR       string
	vmIPv6CIDR   string
	guestMAC     string
	hostname     string
	resolvConf   string
	logLevel     string
	allowGateway bool
	ports        string
	vm           string
	cpuProfile   string
	noOffload    bool
	noRA         bool
	raInterval   time.Duration
	pcap         string
	pcapMaxBytes string
	control      string
	metrics      string
	noSeccomp    bool
	noRawPing    bool
}

// newRunCommand builds `masq run`.
func newRunCommand() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Serve a guest's tap: DHCP, gateway, masquerade",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.config(cmd.Flags())
			if err != nil {
				return &usageError{err}
			}
			stop, err := startCPUProfile(f.cpuProfile)
			if err != nil {
				return &usageError{err}
			}
			defer stop()
			err = masq.Run(cmd.Context(), cfg)
			var cfgErr *masq.ConfigError
			if errors.As(err, &cfgErr) {
				return &usageError{err}
			}
			return err
		},
	}
	f.register(cmd.Flags())
	return cmd
}

// register declares the flags on fs with KubeVirt's defaults.
func (f *runFlags) register(fs *pflag.FlagSet) {
	d := masq.DefaultConfig()
	fs.StringVar(&f.tap, "tap", d.Tap, "guest tap device: created, or attached when it exists")
	fs.StringVar(&f.guestNetns, "guest-netns", "", "network namespace path the tap lives in (e.g. /run/netns/guest); the fd stays with masq")
	fs.IntVar(&f.tapFD, "tap-fd", -1, "inherited, already open tap file descriptor (instead of --tap)")
	fs.StringVar(&f.attach, "attach", "", "existing interface whose other end is the guest (QEMU's tap, a veth), read with AF_PACKET; needs CAP_NET_RAW (instead of --tap)")
	fs.StringVar(&f.socket, "socket", "", "listen for QEMU's stream netdev instead of a tap: a unix socket path, or tcp:IP:PORT")
	fs.StringVar(&f.socketMode, "socket-mode", "0600", "permission bits of the --socket (or --vhost-user) file, in octal")
	fs.StringVar(&f.vhostUser, "vhost-user", "", "be the vhost-user back-end of QEMU's virtio-net device, listening on this unix socket path")
	fs.StringVar(&f.podInterface, "pod-interface", "", "pod interface (default: the interface of the default route)")
	fs.Uint32Var(&f.mtu, "mtu", 0, fmt.Sprintf("guest MTU, %d..%d (default: the pod interface's MTU)", masq.MinMTU, masq.MaxMTU))
	fs.StringVar(&f.vmCIDR, "vm-cidr", d.VMCIDR.String(), "guest IPv4 network: gateway is its first address, guest the second")
	fs.StringVar(&f.vmIPv6CIDR, "vm-ipv6-cidr", d.VMIPv6CIDR.String(), "guest IPv6 network (empty: no IPv6)")
	fs.StringVar(&f.guestMAC, "guest-mac", "", "answer DHCP only for this MAC address")
	fs.StringVar(&f.hostname, "hostname", "", "host name sent to the guest (default: the pod's)")
	fs.StringVar(&f.resolvConf, "resolv-conf", d.ResolvConf, "resolver configuration whose nameservers and search domains the guest gets")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&f.ports, "ports", "", `pod ports forwarded to the guest, e.g. "80,443/tcp,53/udp,8000-8100,5353/tcp+udp" (default: every port but 49152, 49153 and the pod's ephemeral range)`)
	fs.StringVar(&f.vm, "vm", "", "KubeVirt VirtualMachine or VirtualMachineInstance manifest (YAML or JSON) to take ports, CIDRs and MAC from; flags override it")
	fs.BoolVar(&f.noOffload, "no-offload", false, "plain frames on the tap: no virtio-net header, no TSO (slower; for debugging)")
	fs.StringVar(&f.cpuProfile, "cpu-profile", "", "write a Go CPU profile of the whole run to this file (for performance work)")
	fs.BoolVar(&f.noRA, "no-ra", false, "send no IPv6 Router Advertisements (the guest's IPv6 default route is then static)")
	fs.DurationVar(&f.raInterval, "ra-interval", dhcp.DefaultRAInterval, "longest time between unsolicited Router Advertisements, 4s..30m")
	fs.BoolVar(&f.allowGateway, "allow-gateway-to-pod", false, "let the guest reach the pod's loopback services at the gateway's address")
	fs.StringVar(&f.pcap, "pcap", "", "record every frame on the guest's link, both ways, into the pcap `FILE` (for tcpdump -r, Wireshark), up to --pcap-max-bytes")
	fs.StringVar(&f.pcapMaxBytes, "pcap-max-bytes", fmt.Sprint(masq.DefaultPCAPMaxBytes>>20, "MiB"), "`SIZE` cap of each packet capture (--pcap's, each masq capture's): bytes, or KiB, MiB, GiB")
	fs.StringVar(&f.control, "control", "", "serve status, flows and metrics (HTTP, JSON) on this unix socket, mode 0600; read it with `masq status` and `masq flows`")
	fs.StringVar(&f.metrics, "metrics", "", "serve Prometheus /metrics, /healthz and /readyz on this TCP address, e.g. 127.0.0.1:9090 or :9090")
	fs.BoolVar(&f.noRawPing, "no-raw-ping", false, "never answer guest pings through raw ICMP sockets (only through the pod's ping sockets), so masq keeps no capability at all after setup")
	fs.BoolVar(&f.noSeccomp, "no-seccomp", false, "install no seccomp filter after setup (capabilities are still dropped; for debugging a refused system call)")
}

// config turns the flags into a validated masq.Config.
func (f *runFlags) config(fs *pflag.FlagSet) (masq.Config, error) {
	cfg := masq.DefaultConfig()
	links := []string{"tap", "tap-fd", "attach", "socket", "vhost-user"}
	if err := exclusive(fs, links...); err != nil {
		return cfg, err
	}

	vmPorts, err := f.applyManifest(fs)
	if err != nil {
		return cfg, err
	}
	if cfg.VMCIDR, err = parsePrefix("--vm-cidr", f.vmCIDR); err != nil {
		return cfg, err
	}
	if cfg.VMIPv6CIDR, err = parseOptionalPrefix("--vm-ipv6-cidr", f.vmIPv6CIDR); err != nil {
		return cfg, err
	}
	if cfg.GuestMAC, err = parseMAC(f.guestMAC); err != nil {
		return cfg, err
	}
	cfg.Ports = vmPorts
	if fs.Changed("ports") { // the flag wins over the manifest, even when empty
		if cfg.Ports, err = parsePorts(f.ports); err != nil {
			return cfg, err
		}
	}
	level, err := parseLevel(f.logLevel)
	if err != nil {
		return cfg, err
	}
	cfg.Tap, cfg.GuestNetns, cfg.TapFD, cfg.Attach = f.tap, f.guestNetns, f.tapFD, f.attach
	if f.socket != "" {
		if cfg.Socket, err = link.ParseSocketAddr(f.socket); err != nil {
			return cfg, fmt.Errorf("--socket %q: %w", f.socket, err)
		}
		if cfg.SocketMode, err = parseMode(f.socketMode); err != nil {
			return cfg, err
		}
	}
	if cfg.VhostUser = f.vhostUser; f.vhostUser != "" {
		if cfg.SocketMode, err = parseMode(f.socketMode); err != nil {
			return cfg, err
		}
	}
	cfg.PodInterface, cfg.MTU, cfg.Hostname, cfg.ResolvConf = f.podInterface, f.mtu, f.hostname, f.resolvConf
	cfg.AllowGatewayToPod, cfg.NoOffload = f.allowGateway, f.noOffload
	cfg.NoRA, cfg.RAInterval = f.noRA, f.raInterval
	cfg.PCAP = f.pcap
	if cfg.PCAPMaxBytes, err = parsePCAPMaxBytes(f.pcapMaxBytes); err != nil {
		return cfg, err
	}
	cfg.Control, cfg.Metrics, cfg.Version = f.control, f.metrics, version
	// The command is the whole process: confine it after setup.
	cfg.Confine, cfg.NoSeccomp, cfg.NoRawPing = true, f.noSeccomp, f.noRawPing
	cfg.SeccompCrash = os.Getenv(seccompDenyEnv) == "crash"
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	if !slices.ContainsFunc(links, fs.Changed) {
		return cfg, errors.New("no guest link: give one of --tap NAME, --tap-fd N, --attach NAME, --socket PATH|tcp:IP:PORT or --vhost-user PATH")
	}
	return cfg, nil
}

// seccompDenyEnv, set to "crash", makes a system call outside the seccomp
// allowlist crash masq with its stack instead of failing with EPERM. The
// tests set it, so that every path they take proves the allowlist; it is
// no switch for production.
const seccompDenyEnv = "MASQ_SECCOMP_DENY"

// exclusive fails when more than one of the named guest-link flags is
// set, naming the first two.
func exclusive(fs *pflag.FlagSet, names ...string) error {
	var set []string
	for _, n := range names {
		if fs.Changed(n) {
			set = append(set, "--"+n)
		}
	}
	if len(set) > 1 {
		return fmt.Errorf("%s and %s exclude each other: the guest has one link", set[0], set[1])
	}
	return nil
}

// parseMode parses --socket-mode: octal permission bits.
func parseMode(s string) (fs.FileMode, error) {
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m > 0o777 {
		return 0, fmt.Errorf("--socket-mode %q: want octal permission bits, like 0600 or 0660", s)
	}
	return fs.FileMode(m), nil
}

// applyManifest fills the flags a --vm manifest sets and the command line
// did not, and returns the manifest's port set (nil: none listed, or no
// --vm), which applies unless --ports is given.
func (f *runFlags) applyManifest(fs *pflag.FlagSet) (*ports.Set, error) {
	if f.vm == "" {
		return nil, nil
	}
	m, err := kubevirt.ReadManifest(f.vm)
	if err != nil {
		return nil, fmt.Errorf("--vm: %w", err)
	}
	set := func(flag string, dst *string, v string) {
		if !fs.Changed(flag) && v != "" {
			*dst = v
		}
	}
	if m.VMCIDR.IsValid() {
		set("vm-cidr", &f.vmCIDR, m.VMCIDR.String())
	}
	if m.VMIPv6CIDR.IsValid() {
		set("vm-ipv6-cidr", &f.vmIPv6CIDR, m.VMIPv6CIDR.String())
	}
	set("guest-mac", &f.guestMAC, m.MAC.String())
	return m.Ports, nil
}

// parsePorts parses --ports; empty means every port (nil).
func parsePorts(spec string) (*ports.Set, error) {
	if strings.TrimSpace(spec) == "" {
		return nil, nil
	}
	p, err := ports.Parse(spec)
	if err != nil {
		return nil, fmt.Errorf("--ports: %w", err)
	}
	return &p, nil
}

// parsePrefix parses a CIDR flag value.
func parsePrefix(flag, s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return p, fmt.Errorf("%s %q: want a network in CIDR form, like 10.0.2.0/24", flag, s)
	}
	return p, nil
}

// parseOptionalPrefix is parsePrefix where empty means "none".
func parseOptionalPrefix(flag, s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, nil
	}
	return parsePrefix(flag, s)
}

// parseMAC parses --guest-mac: empty, or a 6-byte unicast MAC address.
func parseMAC(s string) (net.HardwareAddr, error) {
	if s == "" {
		return nil, nil
	}
	mac, err := net.ParseMAC(s)
	if err != nil || len(mac) != 6 {
		return nil, fmt.Errorf("--guest-mac %q: want a 6-byte MAC address like 52:54:00:12:34:56", s)
	}
	if mac[0]&1 != 0 {
		return nil, fmt.Errorf("--guest-mac %q: a multicast address cannot be a guest's", s)
	}
	return mac, nil
}

// parseLevel parses --log-level.
func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToLower(s))); err != nil || strings.ContainsAny(s, "+-") {
		return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// startCPUProfile profiles the process into path until the returned stop
// is called; an empty path profiles nothing.
func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpu-profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpu-profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
