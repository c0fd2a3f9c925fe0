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
		{[]string{"run", "--guest-mac", "zz:zz"}, `--guest-mac "zz:zz"`},
		{[]string{"run", "--guest-mac", "01:00:5e:00:00:01"}, "multicast"},
		{[]string{"run", "--log-level", "loud"}, `--log-level "loud": want debug, info, warn or error`},
		{[]string{"run", "--tap", "t0", "--tap-fd", "3"}, "--tap and --tap-fd exclude each other"},
		{[]string{"run", "--tap", "much-too-long-name"}, "--tap"},
		{[]string{"run", "--hostname", "bad_name"}, "--hostname"},
		{[]string{"run", "--no-such-flag"}, "unknown flag: --no-such-flag"},
		{[]string{"run", "--guest-netns", "/nonexistent/netns", "--mtu", "1500"}, `--guest-netns "/nonexistent/netns"`},
		{[]string{"run", "--pod-interface", "nosuchif0"}, `--pod-interface "nosuchif0"`},
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
