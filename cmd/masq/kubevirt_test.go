package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const samples = "../../testdata/kubevirt/"

// execute runs the command line args with stdin and returns stdout.
func execute(t *testing.T, stdin []byte, args ...string) ([]byte, error) {
	t.Helper()
	root := newRootCommand()
	root.SetArgs(args)
	var out bytes.Buffer
	root.SetIn(bytes.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&bytes.Buffer{})
	err := root.ExecuteContext(context.Background())
	return out.Bytes(), err
}

func TestKubevirtDomain(t *testing.T) {
	dom, err := os.ReadFile(samples + "domain-multus.xml")
	if err != nil {
		t.Fatal(err)
	}
	got, err := execute(t, dom, "kubevirt", "domain", "--vmi", samples+"vmi-multus.json")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(samples + "domain-multus.golden")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("masq kubevirt domain wrote\n%s\nwant\n%s", got, want)
	}
}

// TestKubevirtDomainVhostUser: --vhost-user alone picks the default
// socket path and gives the vhost-user form.
func TestKubevirtDomainVhostUser(t *testing.T) {
	dom, err := os.ReadFile(samples + "vhostuser-basic.xml")
	if err != nil {
		t.Fatal(err)
	}
	got, err := execute(t, dom, "kubevirt", "domain", "--vmi", samples+"vmi-basic.json", "--vhost-user")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(samples + "vhostuser-basic.golden")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("masq kubevirt domain --vhost-user wrote\n%s\nwant\n%s", got, want)
	}
}

func TestKubevirtUsageErrors(t *testing.T) {
	dom, err := os.ReadFile(samples + "domain-basic.xml")
	if err != nil {
		t.Fatal(err)
	}
	vmi := samples + "vmi-basic.json"
	tests := []struct {
		args  []string
		stdin []byte
		want  string
	}{
		{[]string{"kubevirt", "domain"}, dom, "--vmi: required"},
		{[]string{"kubevirt", "domain", "--vmi", "/nonexistent.json"}, dom, "--vmi: open /nonexistent.json"},
		{[]string{"kubevirt", "domain", "--vmi", vmi, "--port", "0"}, dom, "--port 0: want masq's TCP port"},
		{[]string{"kubevirt", "domain", "--vmi", vmi, "--port", "70000"}, dom, `invalid argument "70000" for "--port"`},
		{[]string{"kubevirt", "domain", "--vmi", vmi, "--binding", ""}, dom, "--binding: empty"},
		{[]string{"kubevirt", "domain", "--vmi", vmi, "--binding", "passt"}, dom,
			"--vmi " + vmi + ": spec.domain.devices.interfaces: no interface bound to the plugin: want one with binding: {name: passt}"},
		{[]string{"kubevirt", "domain", "--vmi", samples + "domain-basic.xml"}, dom, "--vmi " + samples + "domain-basic.xml: not a VirtualMachineInstance"},
		{[]string{"kubevirt", "domain", "--vmi", vmi}, []byte("<domain>"), "stdin: domain XML: not well-formed"},
		{[]string{"kubevirt", "domain", "--vmi", vmi}, nil, "stdin: domain XML: no <devices>"},
		{[]string{"kubevirt", "hook", "--port", "0"}, nil, "--port 0"},
		{[]string{"kubevirt", "hook", "--socket", filepath.Join(t.TempDir(), "no", "dir", "masq.sock")}, nil, "--socket"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, err := execute(t, tt.stdin, tt.args...)
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
