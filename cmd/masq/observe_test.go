package main

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/masqnet/masq/flowtable"
)

func TestObserveCommandsUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"status"},
		{"flows"},
		{"flows", "--control", "/nonexistent.sock", "--proto", "sctp"},
		{"flows", "--control", "/nonexistent.sock", "--addr", "10.0.2"},
	} {
		root := newRootCommand()
		root.SetArgs(args)
		root.SetOut(&bytes.Buffer{})
		root.SetErr(&bytes.Buffer{})
		var usage *usageError
		if err := root.ExecuteContext(context.Background()); !errors.As(err, &usage) {
			t.Errorf("%v: error %v, want a usage error", args, err)
		}
	}
}

func TestPrintFlows(t *testing.T) {
	var b bytes.Buffer
	flows := []flowtable.Info{{
		Proto: flowtable.UDP, Direction: flowtable.Outbound, State: "replied",
		Guest: netip.MustParseAddrPort("10.0.2.2:5353"), Remote: netip.MustParseAddrPort("198.18.0.53:53"), Remotes: 3,
		BytesFromGuest: 1500, PacketsFromGuest: 2, BytesToGuest: 2_500_000, PacketsToGuest: 1800,
		AgeSeconds: 61.4, IdleSeconds: 0.2,
	}}
	if err := printFlows(&b, flows); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	want := []string{"udp", "outbound", "replied", "10.0.2.2:5353", "198.18.0.53:53 (+2)", "-", "1.5kB/2", "2.5MB/1800", "1m1s", "0s"}
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "PROTO") || lines[2] != "1 flows" {
		t.Fatalf("output:\n%s", b.String())
	}
	for _, w := range want {
		if !strings.Contains(lines[1], w) {
			t.Errorf("flow line %q lacks %q", lines[1], w)
		}
	}
}
