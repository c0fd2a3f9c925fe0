package kubevirt

import (
	"bytes"
	"encoding/xml"
	"errors"
	"flag"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/kubevirt/*.golden from AddInterface's output")

// TestAddInterfaceGolden runs AddInterface on each
// testdata/kubevirt/domain-NAME.xml with vmi-NAME.json and compares the
// result with domain-NAME.golden.
func TestAddInterfaceGolden(t *testing.T) {
	domains, err := filepath.Glob("../testdata/kubevirt/domain-*.xml")
	if err != nil || len(domains) == 0 {
		t.Fatalf("no domain samples: %v", err)
	}
	for _, path := range domains {
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(path), "domain-"), ".xml")
		t.Run(name, func(t *testing.T) {
			dom := readFile(t, path)
			vmi := readFile(t, filepath.Join(filepath.Dir(path), "vmi-"+name+".json"))
			got, err := AddInterface(dom, vmi, DomainOptions{})
			if err != nil {
				t.Fatal(err)
			}
			golden := strings.TrimSuffix(path, ".xml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if want := readFile(t, golden); !bytes.Equal(got, want) {
				t.Errorf("AddInterface(%s) =\n%s\nwant (%s)\n%s", path, got, golden, want)
			}
			checkWellFormed(t, got)
			checkOnlyInserted(t, dom, got)
			again, err := AddInterface(got, vmi, DomainOptions{})
			if err != nil || !bytes.Equal(again, got) {
				t.Errorf("AddInterface twice changed the result again (err %v):\n%s", err, again)
			}
		})
	}
}

// checkWellFormed fails t unless data is well-formed XML.
func checkWellFormed(t *testing.T, data []byte) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(data))
	for {
		if _, err := d.Token(); err == io.EOF {
			return
		} else if err != nil {
			t.Fatalf("result is not well-formed: %v", err)
		}
	}
}

// checkOnlyInserted fails t unless out is in with one <interface> added,
// or the one with alias ua-default replaced, and the rest untouched.
func checkOnlyInserted(t *testing.T, in, out []byte) {
	t.Helper()
	if n := bytes.Count(out, []byte(`<interface type="client">`)); n != 1 {
		t.Fatalf("%d masq interfaces in the result, want 1", n)
	}
	old := -1
	if i := bytes.Index(in, []byte(`<alias name="ua-default"`)); i >= 0 {
		old = bytes.LastIndex(in[:i], []byte("<interface"))
	}
	if got, want := withoutElement(out, bytes.Index(out, []byte(`<interface type="client">`))), withoutElement(in, old); got != want {
		t.Errorf("beside the interface, the result differs from the input:\n%s\nwant\n%s", got, want)
	}
}

// withoutElement returns data without the <interface> element starting at
// offset at (none when at < 0), and without its line if it has its own.
func withoutElement(data []byte, at int) string {
	if at < 0 {
		return string(data)
	}
	end := at + bytes.Index(data[at:], []byte("</interface>")) + len("</interface>")
	if start := bytes.LastIndexByte(data[:at], '\n') + 1; len(bytes.TrimSpace(data[start:at])) == 0 &&
		end < len(data) && data[end] == '\n' {
		at, end = start, end+1
	}
	return string(data[:at]) + string(data[end:])
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAddInterfaceOptions(t *testing.T) {
	dom := readFile(t, "../testdata/kubevirt/domain-compact.xml")
	vmi := []byte(`{"spec":{"domain":{"devices":{"interfaces":[{"name":"net0","binding":{"name":"masq-tcp"}}]}},
		"networks":[{"name":"net0","pod":{}}]}}`)
	got, err := AddInterface(dom, vmi, DomainOptions{Binding: "masq-tcp", Port: 12345})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`<source address="127.0.0.1" port="12345"/>`, `<alias name="ua-net0"/>`} {
		if !bytes.Contains(got, []byte(want)) {
			t.Errorf("result lacks %s:\n%s", want, got)
		}
	}
	if _, err := AddInterface(dom, vmi, DomainOptions{}); !errors.Is(err, ErrNoBoundInterface) {
		t.Errorf("binding masq on a masq-tcp VMI: error %v, want ErrNoBoundInterface", err)
	}
}

func TestAddInterfaceDomainErrors(t *testing.T) {
	vmi := readFile(t, "../testdata/kubevirt/vmi-basic.json")
	tests := []struct {
		name, domain, want string
	}{
		{"empty", "", "no <devices>"},
		{"not xml", "<domain><devices>", "not well-formed"},
		{"wrong root", "<network><devices></devices></network>", "root element <network>"},
		{"no devices", "<domain><name>x</name></domain>", "no <devices>"},
		{"empty devices", "<domain><devices/></domain>", "<devices/> is empty"},
		{"two aliases", `<domain><devices><interface><alias name="ua-default"/></interface>` +
			`<interface><alias name="ua-default"/></interface></devices></domain>`, `two <interface> elements with alias "ua-default"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := AddInterface([]byte(tt.domain), vmi, DomainOptions{})
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "domain XML: ") {
				t.Fatalf("error = %v, want one starting with \"domain XML: \" and containing %q", err, tt.want)
			}
		})
	}
}

func TestParseVMI(t *testing.T) {
	got, err := ParseVMI(readFile(t, "../testdata/kubevirt/vmi-multus.json"), DefaultBinding)
	if err != nil {
		t.Fatal(err)
	}
	want := BoundInterface{
		Name:      "default",
		MAC:       net.HardwareAddr{2, 0, 0, 0x0a, 0x0b, 0x0c},
		Model:     "virtio-transitional",
		PCI:       &PCIAddress{Bus: 2, Slot: 1},
		BootOrder: 2,
		ACPIIndex: 1,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseVMI = %+v, want %+v", got, want)
	}
}

func TestParseVMIErrors(t *testing.T) {
	const nets = `"networks":[{"name":"default","pod":{}},{"name":"blue","multus":{"networkName":"blue"}}]`
	vmi := func(ifaces string) string {
		return `{"spec":{"domain":{"devices":{"interfaces":[` + ifaces + `]}},` + nets + `}}`
	}
	tests := []struct {
		name, vmi string
		want      []string
	}{
		{"empty", " \n", []string{"empty VMI"}},
		{"not json", "{", []string{"not a VirtualMachineInstance"}},
		{"wrong kind", `{"apiVersion":"v1","kind":"Pod"}`, []string{`kind "Pod"`}},
		{"no spec", `{"kind":"VirtualMachineInstance","apiVersion":"kubevirt.io/v1"}`, []string{"spec: missing"}},
		{"no interfaces", `{"spec":{}}`, []string{"spec.domain.devices.interfaces:", "no interface bound", "binding: {name: masq}"}},
		{"masquerade only", vmi(`{"name":"default","masquerade":{}}`), []string{"no interface bound to the plugin"}},
		{"other binding", vmi(`{"name":"default","binding":{"name":"passt"}}`), []string{"no interface bound"}},
		{"two", vmi(`{"name":"default","binding":{"name":"masq"}},{"name":"blue","binding":{"name":"masq"}}`),
			[]string{"interfaces[0] and spec.domain.devices.interfaces[1]", `"default", "blue"`, "two interfaces with binding \"masq\""}},
		{"no network", vmi(`{"name":"red","binding":{"name":"masq"}}`), []string{"interfaces[0]", `"red" has no network`}},
		{"multus", vmi(`{"name":"blue","binding":{"name":"masq"}}`), []string{"spec.networks[1]", "not the pod network"}},
		{"mac", vmi(`{"name":"default","binding":{"name":"masq"},"macAddress":"02:00"}`), []string{"interfaces[0].macAddress \"02:00\""}},
		{"model", vmi(`{"name":"default","binding":{"name":"masq"},"model":"virtio\"/><x"}`), []string{"interfaces[0].model", "allowed are virtio, e1000"}},
		{"pci", vmi(`{"name":"default","binding":{"name":"masq"},"pciAddress":"0000:02:20.0"}`), []string{"interfaces[0].pciAddress", `"0000:02:20.0"`, "DDDD:BB:SS.F"}},
		{"boot order", vmi(`{"name":"default","binding":{"name":"masq"},"bootOrder":0}`), []string{"interfaces[0].bootOrder 0"}},
		{"acpi", vmi(`{"name":"default","binding":{"name":"masq"},"acpiIndex":-1}`), []string{"interfaces[0].acpiIndex -1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseVMI([]byte(tt.vmi), DefaultBinding)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestParsePCIAddress(t *testing.T) {
	good := map[string]PCIAddress{
		"0000:00:00.0": {},
		"ffff:ff:1f.7": {Domain: 0xffff, Bus: 0xff, Slot: 0x1f, Function: 7},
		"0000:81:01.0": {Bus: 0x81, Slot: 1},
	}
	for s, want := range good {
		if got, err := ParsePCIAddress(s); err != nil || got != want {
			t.Errorf("ParsePCIAddress(%q) = %+v, %v; want %+v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "0000:81:01", "00:81:01.0", "0000:81:20.0", "0000:81:01.8", "0000:g1:01.0", "0000:81:01.0.0", "+000:81:01.0"} {
		if _, err := ParsePCIAddress(s); err == nil {
			t.Errorf("ParsePCIAddress(%q): no error", s)
		}
	}
}

func TestDeepDomainRefused(t *testing.T) {
	deep := "<domain><devices>" + strings.Repeat("<a>", 100000) + strings.Repeat("</a>", 100000) + "</devices></domain>"
	// It was accepted, after 76 s of work quadratic in the depth.
	_, err := scanDomain([]byte(deep), "ua-default")
	if err == nil || !strings.Contains(err.Error(), "nested deeper") {
		t.Fatalf("100,000 levels: %v, want a refusal", err)
	}
}

// TestAddInterfaceVhostUserGolden runs AddInterface with the vhost-user
// binding on each testdata/kubevirt/vhostuser-NAME.xml (with vmi-NAME.json,
// or vmi-basic.json) and compares the result with vhostuser-NAME.golden:
// the vhostuser interface and shared memfd memory, whatever memory backing
// the domain had.
func TestAddInterfaceVhostUserGolden(t *testing.T) {
	domains, err := filepath.Glob("../testdata/kubevirt/vhostuser-*.xml")
	if err != nil || len(domains) == 0 {
		t.Fatalf("no domain samples: %v", err)
	}
	opts := DomainOptions{VhostUser: DefaultVhostUserSocket}
	for _, path := range domains {
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(path), "vhostuser-"), ".xml")
		t.Run(name, func(t *testing.T) {
			dom := readFile(t, path)
			vmiPath := filepath.Join(filepath.Dir(path), "vmi-"+name+".json")
			if _, err := os.Stat(vmiPath); err != nil {
				vmiPath = filepath.Join(filepath.Dir(path), "vmi-basic.json")
			}
			vmi := readFile(t, vmiPath)
			got, err := AddInterface(dom, vmi, opts)
			if err != nil {
				t.Fatal(err)
			}
			golden := strings.TrimSuffix(path, ".xml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if want := readFile(t, golden); !bytes.Equal(got, want) {
				t.Errorf("AddInterface(%s) =\n%s\nwant (%s)\n%s", path, got, golden, want)
			}
			checkWellFormed(t, got)
			for _, want := range []string{`<interface type="vhostuser">`,
				`<source type="unix" path="` + DefaultVhostUserSocket + `" mode="client"/>`, sharedAccess} {
				if n := bytes.Count(got, []byte(want)); n != 1 {
					t.Errorf("%d of %s in the result, want 1", n, want)
				}
			}
			if n := bytes.Count(got, []byte("<memoryBacking")); n != 1 {
				t.Errorf("%d <memoryBacking> in the result, want 1", n)
			}
			again, err := AddInterface(got, vmi, opts)
			if err != nil || !bytes.Equal(again, got) {
				t.Errorf("AddInterface twice changed the result again (err %v):\n%s", err, again)
			}
		})
	}
}

func TestInsertVhostUserInterfaceRefuses(t *testing.T) {
	dom := readFile(t, "../testdata/kubevirt/domain-basic.xml")
	if _, err := InsertVhostUserInterface(dom, BoundInterface{Name: "default", Model: "virtio"}, "masq.sock"); err == nil {
		t.Fatal("a relative socket path was accepted")
	}
	if _, err := InsertVhostUserInterface(dom, BoundInterface{Name: "default", Model: "e1000e"}, DefaultVhostUserSocket); err == nil {
		t.Fatal("an e1000e NIC was given a vhost-user back-end")
	}
}
