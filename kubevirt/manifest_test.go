package kubevirt

import (
	"errors"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/masqnet/masq/ports"
)

func TestReadManifest(t *testing.T) {
	tests := []struct {
		path  string
		want  Manifest // but Ports
		ports string   // Ports.String(); "" means Ports is nil
	}{
		{
			path:  "../testdata/example-vm.yaml",
			want:  Manifest{Kind: KindVirtualMachine, Name: "example-vm", Interface: "red"},
			ports: "80/tcp",
		},
		{
			path: "../testdata/example-vm-ipv6.yaml",
			want: Manifest{Kind: KindVirtualMachineInstance, Name: "example-vm-ipv6", Interface: "default"},
		},
		{
			path:  "../testdata/vm/vm.json",
			want:  Manifest{Kind: KindVirtualMachine, Name: "json-vm", Interface: "default"},
			ports: "22/tcp,443/tcp",
		},
		{
			path: "../testdata/vm/custom-cidr.yaml",
			want: Manifest{
				Kind: KindVirtualMachineInstance, Name: "custom-cidr", Interface: "default",
				VMCIDR:     netip.MustParsePrefix("10.11.12.0/24"),
				VMIPv6CIDR: netip.MustParsePrefix("fd20::/120"),
				MAC:        net.HardwareAddr{0x02, 0, 0, 0x0a, 0x0b, 0x0c},
			},
			ports: "53/tcp,8080/tcp,53/udp,514/udp", // dns/UDP, dns-tcp/TCP, syslog/UDP, 8080 without a protocol
		},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.path), func(t *testing.T) {
			got, err := ReadManifest(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tt.ports == "" && got.Ports != nil:
				t.Errorf("Ports = %q, want nil (every port)", got.Ports)
			case tt.ports != "" && (got.Ports == nil || got.Ports.String() != tt.ports):
				t.Errorf("Ports = %v, want %q", got.Ports, tt.ports)
			}
			got.Ports = nil
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ReadManifest(%s) =\n%+v\nwant\n%+v", tt.path, got, tt.want)
			}
		})
	}
}

func TestReadManifestErrors(t *testing.T) {
	tests := []struct {
		file string
		want []string // substrings the error must hold, after the path
	}{
		{"no-masquerade.yaml", []string{"spec.domain.devices.interfaces:", "no interface with masquerade"}},
		{"two-masquerade.yaml", []string{"spec.domain.devices.interfaces[0] and spec.domain.devices.interfaces[1]", `"default", "other"`, "two masquerade"}},
		{"bad-port.yaml", []string{`spec.domain.devices.interfaces[0].ports[1] ("huge")`, "port 70000", "1 to 65535"}},
		{"zero-port.yaml", []string{`interfaces[0].ports[0] ("nothing")`, "port 0", "1 to 65535"}},
		{"migration-port.yaml", []string{`ports[0] ("libvirt")`, "port 49152", "libvirt's migration"}},
		{"bad-protocol.yaml", []string{`interfaces[0].ports[0] ("sigtran")`, `protocol "SCTP"`, "TCP or UDP"}},
		{"masquerade-multus.yaml", []string{"spec.domain.devices.interfaces[0]", "spec.networks[0]", "not the pod network"}},
		{"missing-network.yaml", []string{"spec.domain.devices.interfaces[0]", `"default" has no network`}},
		{"bad-mac.yaml", []string{`spec.domain.devices.interfaces[0].macAddress "02:00:00:0a:0b"`}},
		{"cidr-mask.yaml", []string{`spec.networks[0].pod.vmNetworkCIDR "10.0.2.0/33"`, "IPv4 network in CIDR form"}},
		{"cidr-family.yaml", []string{`spec.networks[0].pod.vmIPv6NetworkCIDR "10.0.2.0/24"`, "IPv6"}},
		{"bad-cidr-vm.yaml", []string{`spec.template.spec.networks[0].pod.vmNetworkCIDR "10.0.2.0"`}},
		{"pod.yaml", []string{`apiVersion "v1" kind "Pod"`, "VirtualMachine or VirtualMachineInstance"}},
		{"no-template.yaml", []string{"spec.template.spec: missing"}},
		{"not-yaml.txt", []string{"not a VM manifest in YAML or JSON"}},
		{"port-string.yaml", []string{"not a VM manifest", "port"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join("../testdata/vm", tt.file)
			got, err := ReadManifest(path)
			if err == nil {
				t.Fatalf("ReadManifest(%s) = %+v, want an error", path, got)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, path+": ") {
				t.Errorf("error %q does not start with the path", msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not say %q", msg, w)
				}
			}
		})
	}
}

func TestReadManifestMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vm.yaml")
	_, err := ReadManifest(path)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Errorf("ReadManifest(missing) = %v, want fs.ErrNotExist naming %s", err, path)
	}
}

func TestParseManifest(t *testing.T) {
	const vmi = "apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\n"
	const masq = "spec:\n  domain:\n    devices:\n      interfaces:\n      - name: eth\n        masquerade: {}\n"
	tests := []struct {
		name string
		data string
		want string // error substring; "" for success
	}{
		{"empty", "", "empty file"},
		{"blank", " \n\t\n", "empty file"},
		{"scalar", "hello", "not a VM manifest"},
		{"list", "- a\n- b\n", "not a VM manifest"},
		{"no kind", "apiVersion: kubevirt.io/v1\n", `kind ""`},
		{"other group", "apiVersion: vmoperator.vmware.com/v1alpha1\nkind: VirtualMachine\n", "apiVersion"},
		{"lower-case kind", "apiVersion: kubevirt.io/v1\nkind: virtualmachine\n", `kind "virtualmachine"`},
		{"no spec", vmi, "spec: missing"},
		{"spec null", vmi + "spec: null\n", "spec: missing"},
		{"no interfaces", vmi + "spec: {}\n", "no interface with masquerade"},
		{"masquerade null", vmi + "spec:\n  domain:\n    devices:\n      interfaces:\n      - name: eth\n        masquerade:\n  networks:\n  - name: eth\n    pod: {}\n", "no interface with masquerade"},
		{"no networks", vmi + masq, `"eth" has no network`},
		{"pod", vmi + masq + "  networks:\n  - name: eth\n    pod: {}\n", ""},
		{"pod null", vmi + masq + "  networks:\n  - name: eth\n    pod:\n", "not the pod network"},
		{"mac too long", vmi + masq + "        macAddress: 00:00:5e:00:53:01:02:03\n  networks:\n  - name: eth\n    pod: {}\n", "48-bit"},
		{"port negative", vmi + masq + "        ports:\n        - port: -1\n  networks:\n  - name: eth\n    pod: {}\n", "port -1"},
		{"port float", vmi + masq + "        ports:\n        - port: 80.5\n  networks:\n  - name: eth\n    pod: {}\n", "not a VM manifest"},
		{"protocol lower", vmi + masq + "        ports:\n        - port: 53\n          protocol: uDp\n  networks:\n  - name: eth\n    pod: {}\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseManifest([]byte(tt.data))
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("ParseManifest: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("ParseManifest error %v, want one saying %q", err, tt.want)
			}
		})
	}
}

// FuzzParseManifest checks that ParseManifest never panics on arbitrary
// bytes and that whatever it accepts holds only valid values.
// Seeds: every manifest under testdata.
func FuzzParseManifest(f *testing.F) {
	for _, glob := range []string{"../testdata/*.yaml", "../testdata/vm/*"} {
		paths, err := filepath.Glob(glob)
		if err != nil {
			f.Fatal(err)
		}
		for _, p := range paths {
			data, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			return
		}
		if m.Kind != KindVirtualMachine && m.Kind != KindVirtualMachineInstance {
			t.Errorf("kind %q", m.Kind)
		}
		if m.MAC != nil && len(m.MAC) != 6 {
			t.Errorf("MAC %v", m.MAC)
		}
		if m.Ports != nil {
			for proto, port := range m.Ports.All() {
				if ports.Reserved(port) || (proto != ports.TCP && proto != ports.UDP) {
					t.Errorf("Ports %q holds %d/%v", m.Ports, port, proto)
				}
			}
			if again, err := ports.Parse(m.Ports.String()); err != nil || again.String() != m.Ports.String() {
				t.Errorf("Ports %q does not parse back: %q, %v", m.Ports, again, err)
			}
		}
	})
}

func TestParseBoundManifest(t *testing.T) {
	data, err := os.ReadFile("../testdata/kubevirt/vmi-basic.json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseBoundManifest(data, DefaultBinding)
	if err != nil {
		t.Fatal(err)
	}
	if m.Interface != "default" || m.Ports == nil || m.Ports.String() != "22/tcp" {
		t.Fatalf("manifest = %+v (ports %v), want interface default forwarding 22/tcp", m, m.Ports)
	}
	if _, err := ParseBoundManifest(data, "other"); err == nil || !strings.Contains(err.Error(), "binding: {name: other}") {
		t.Fatalf("another binding's name: %v, want an error naming it", err)
	}
	if _, err := ParseManifest(data); err == nil {
		t.Fatal("the hook's bare VMI read as a --vm manifest, want an error (no kind, no masquerade interface)")
	}
}
