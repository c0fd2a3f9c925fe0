package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestBadFlagsAreUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"run", "--mtu", "70000"}, "--mtu 70000: must be between 68 and 65520"},
		{[]string{"run", "--mtu", "-1"}, "--mtu"},
		{[]string{"run", "--vm-cidr", "10.0.2.0/31"}, "--vm-cidr 10.0.2.0/31"},
		{[]string{"run", "--vm-cidr", "banana"}, `--vm-cidr "banana": want a network in CIDR form`},
		{[]string{"run", "--vm-ipv6-cidr", "fd10::/127"}, "--vm-ipv6-cidr fd10::/127"},
		{[]string{"run", "--ra-interval", "1s"}, "--ra-interval 1s: must be between 4s and 30m0s"},
		{[]string{"run", "--ra-interval", "soon"}, "--ra-interval"},
		{[]string{"run", "--guest-mac", "zz:zz"}, `--guest-mac "zz:zz"`},
		{[]string{"run", "--guest-mac", "01:00:5e:00:00:01"}, "multicast"},
		{[]string{"run", "--log-level", "loud"}, `--log-level "loud": want debug, info, warn or error`},
		{[]string{"run"}, "no guest link: give one of --tap NAME, --tap-fd N, --attach NAME, --socket PATH|tcp:IP:PORT or --vhost-user PATH"},
		{[]string{"run", "--tap", "t0", "--tap-fd", "3"}, "--tap and --tap-fd exclude each other"},
		{[]string{"run", "--tap", "much-too-long-name"}, "--tap"},
		{[]string{"run", "--attach", "veth0", "--tap", "t0"}, "--tap and --attach exclude each other"},
		{[]string{"run", "--attach", "veth0", "--tap-fd", "3"}, "--tap-fd and --attach exclude each other"},
		{[]string{"run", "--attach", "much-too-long-name"}, `--attach "much-too-long-name"`},
		{[]string{"run", "--attach", "veth0", "--socket", "/s"}, "exclude each other"},
		{[]string{"run", "--tap", "t0", "--socket", "/s"}, "--tap and --socket exclude each other"},
		{[]string{"run", "--tap-fd", "3", "--socket", "/s"}, "--tap-fd and --socket exclude each other"},
		{[]string{"run", "--socket", "/s", "--socket-mode", "0999"}, `--socket-mode "0999"`},
		{[]string{"run", "--socket", "tcp:localhost:5555"}, `--socket "tcp:localhost:5555": want tcp:IP:PORT`},
		{[]string{"run", "--socket", "/s", "--guest-netns", "/run/netns/x"}, "--guest-netns cannot be used with --socket"},
		{[]string{"run", "--vhost-user", "/v", "--socket", "/s"}, "--socket and --vhost-user exclude each other"},
		{[]string{"run", "--tap", "t0", "--vhost-user", "/v"}, "--tap and --vhost-user exclude each other"},
		{[]string{"run", "--vhost-user", "/v", "--socket-mode", "0999"}, `--socket-mode "0999"`},
		{[]string{"run", "--vhost-user", "/v", "--guest-netns", "/run/netns/x"}, "--guest-netns cannot be used with --vhost-user"},
		{[]string{"run", "--hostname", "bad_name"}, "--hostname"},
		{[]string{"run", "--no-such-flag"}, "unknown flag: --no-such-flag"},
		{[]string{"run", "--tap", "t0", "--guest-netns", "/nonexistent/netns", "--mtu", "1500"}, `--guest-netns "/nonexistent/netns"`},
		{[]string{"run", "--tap", "t0", "--pod-interface", "nosuchif0"}, `--pod-interface "nosuchif0"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			root := newRootCommand()
			root.SetArgs(tt.args)
			root.SetOut(&bytes.Buffer{})
			root.SetErr(&bytes.Buffer{})
			err := root.ExecuteContext(context.Background())
			var usage *usageError
			if !errors.As(err, &usage) {
				t.Fatalf("error = %v (%T), want a usage error", err, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	root := newRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"version"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "masq "+version+"\n" {
		t.Fatalf("version output = %q", got)
	}
}

func TestFlagsFillConfig(t *testing.T) {
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	var f runFlags
	f.register(fs)
	args := []string{"--tap", "vmtap", "--guest-netns", "/run/netns/g", "--mtu", "9000",
		"--vm-cidr", "192.168.7.0/24", "--vm-ipv6-cidr", "", "--guest-mac", "52:54:00:aa:bb:cc",
		"--hostname", "vm1", "--pod-interface", "eth0"}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	cfg, err := f.config(fs)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Tap != "vmtap" || cfg.GuestNetns != "/run/netns/g" || cfg.MTU != 9000 ||
		cfg.VMCIDR.String() != "192.168.7.0/24" || cfg.VMIPv6CIDR.IsValid() ||
		cfg.GuestMAC.String() != "52:54:00:aa:bb:cc" || cfg.Hostname != "vm1" ||
		cfg.PodInterface != "eth0" || cfg.TapFD != -1 || cfg.Logger == nil {
		t.Fatalf("config = %+v", cfg)
	}
}

func TestPortsAndManifest(t *testing.T) {
	tests := []struct {
		name                    string
		args                    []string
		ports, cidr, cidr6, mac string // want; ports "" means every port (nil)
		wantErr                 string
	}{
		{name: "no ports: every port", args: nil, cidr: "10.0.2.0/24", cidr6: "fd10:0:2::/120"},
		{name: "ports flag", args: []string{"--ports", "80,53/udp"}, ports: "80/tcp,53/udp", cidr: "10.0.2.0/24", cidr6: "fd10:0:2::/120"},
		{name: "bad protocol", args: []string{"--ports", "80/sctp"}, wantErr: `--ports: port spec item "80/sctp"`},
		{name: "libvirt port", args: []string{"--ports", "49152"}, wantErr: "libvirt"},
		{name: "manifest", args: []string{"--vm", "../../testdata/example-vm.yaml"}, ports: "80/tcp", cidr: "10.0.2.0/24", cidr6: "fd10:0:2::/120"},
		{name: "manifest with own networks and MAC", args: []string{"--vm", "../../testdata/vm/custom-cidr.yaml"},
			ports: "53/tcp,8080/tcp,53/udp,514/udp", cidr: "10.11.12.0/24", cidr6: "fd20::/120", mac: "02:00:00:0a:0b:0c"},
		{name: "flags override the manifest", args: []string{"--vm", "../../testdata/vm/custom-cidr.yaml", "--ports", "22", "--vm-cidr", "10.9.0.0/16"},
			ports: "22/tcp", cidr: "10.9.0.0/16", cidr6: "fd20::/120", mac: "02:00:00:0a:0b:0c"},
		{name: "empty --ports overrides the manifest: every port", args: []string{"--vm", "../../testdata/vm/custom-cidr.yaml", "--ports", ""},
			ports: "", cidr: "10.11.12.0/24", cidr6: "fd20::/120", mac: "02:00:00:0a:0b:0c"},
		{name: "missing manifest", args: []string{"--vm", "/nonexistent.yaml"}, wantErr: "--vm"},
		{name: "broken manifest", args: []string{"--vm", "../../testdata/vm/no-masquerade.yaml"}, wantErr: "--vm"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
			var f runFlags
			f.register(fs)
			if err := fs.Parse(append([]string{"--tap", "t0"}, tt.args...)); err != nil {
				t.Fatal(err)
			}
			cfg, err := f.config(fs)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			ports := ""
			if cfg.Ports != nil {
				ports = cfg.Ports.String()
			}
			if ports != tt.ports || cfg.VMCIDR.String() != tt.cidr || cfg.VMIPv6CIDR.String() != tt.cidr6 || cfg.GuestMAC.String() != tt.mac {
				t.Fatalf("ports %q, cidr %s, cidr6 %s, mac %q; want %q, %s, %s, %q",
					ports, cfg.VMCIDR, cfg.VMIPv6CIDR, cfg.GuestMAC, tt.ports, tt.cidr, tt.cidr6, tt.mac)
			}
		})
	}
}
