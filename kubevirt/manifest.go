// Package kubevirt reads what masq needs from a KubeVirt VirtualMachine or
// VirtualMachineInstance manifest: the masquerade interface on the pod
// network, its forwarded ports (as a ports.Set, ready for masq.Config)
// and MAC address, and the pod network's guest CIDRs. It links no
// netstack.
//
// It decodes into a few small structs holding only those fields, rather
// than kubevirt.io/api's types: those drag in k8s.io/apimachinery and
// dozens of other modules for a handful of strings.
package kubevirt

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/masqnet/masq/ports"
)

// KindVirtualMachine and KindVirtualMachineInstance are the kinds of
// manifest ReadManifest and ParseManifest accept.
const (
	KindVirtualMachine         = "VirtualMachine"
	KindVirtualMachineInstance = "VirtualMachineInstance"
)

// group is KubeVirt's API group, the part of apiVersion before the '/'.
const group = "kubevirt.io"

// Manifest is what masq takes from a VM manifest.
type Manifest struct {
	// Kind is KindVirtualMachine or KindVirtualMachineInstance.
	Kind string

	// Name is metadata.name; it may be empty.
	Name string

	// Interface is the name of the masquerade interface on the pod network.
	Interface string

	// Ports are the interface's forwarded ports. Nil when it lists none:
	// KubeVirt then forwards every port, as masq.Config.Ports does when
	// nil.
	Ports *ports.Set

	// VMCIDR is the pod network's vmNetworkCIDR, an IPv4 prefix as
	// written; the zero Prefix when absent (KubeVirt's default applies).
	VMCIDR netip.Prefix

	// VMIPv6CIDR is the pod network's vmIPv6NetworkCIDR, an IPv6 prefix as
	// written; the zero Prefix when absent.
	VMIPv6CIDR netip.Prefix

	// MAC is the interface's 48-bit macAddress, nil when absent.
	MAC net.HardwareAddr
}

// ReadManifest reads and parses the manifest at path; see ParseManifest.
// Errors name path.
func ReadManifest(path string) (Manifest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Manifest{}, fmt.Errorf("cannot read VM manifest: %w", err)
	}
	m, err := ParseManifest(data)
	if err != nil {
		return Manifest{}, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// ParseManifest parses a VirtualMachine or VirtualMachineInstance
// manifest, in YAML or JSON. It finds the one interface with the
// masquerade binding, which must be on the pod network, and checks every
// field it reads; an error names the field (e.g.
// spec.template.spec.networks[0].pod.vmNetworkCIDR). Fields it does not
// read are not checked.
func ParseManifest(data []byte) (Manifest, error) {
	return parseManifest(data, masqueradeInterface)
}

// ParseBoundManifest is ParseManifest for a VM whose interface on the pod
// network is bound to a network binding plugin called binding (binding:
// {name: BINDING}, as KubeVirt passes the VMI to the plugin's hook)
// instead of masquerade: {}. Manifest.Interface names that interface.
func ParseBoundManifest(data []byte, binding string) (Manifest, error) {
	return parseManifest(data, boundInterface(binding))
}

// interfaceKind picks the interface masq serves: what reports whether in
// is one, and its description for errors.
type interfaceKind struct {
	is   func(in iface) bool
	what string
	bare bool // a document without apiVersion and kind is a VMI
}

// masqueradeInterface is KubeVirt's masquerade binding's.
var masqueradeInterface = interfaceKind{
	is:   func(in iface) bool { return in.Masquerade != nil },
	what: "masquerade",
}

// boundInterface is a network binding plugin's called name.
func boundInterface(name string) interfaceKind {
	return interfaceKind{
		is:   func(in iface) bool { return in.Binding != nil && in.Binding.Name == name },
		what: fmt.Sprintf("binding: {name: %s}", name),
		bare: true,
	}
}

func parseManifest(data []byte, kind interfaceKind) (Manifest, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return Manifest{}, errors.New("empty file: want a VM manifest in YAML or JSON")
	}
	var doc document
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return Manifest{}, fmt.Errorf("not a VM manifest in YAML or JSON: %w", err)
	}
	if kind.bare && doc.Kind == "" && doc.APIVersion == "" {
		// KubeVirt's hook hands the plugin the VMI's JSON without them.
		doc.Kind, doc.APIVersion = KindVirtualMachineInstance, group+"/v1"
	}
	spec, path, err := doc.vmiSpec()
	if err != nil {
		return Manifest{}, err
	}
	m, err := spec.manifest(path, kind)
	if err != nil {
		return Manifest{}, err
	}
	m.Kind, m.Name = doc.Kind, doc.Metadata.Name
	return m, nil
}

// document is the part of a manifest masq reads. Field names follow
// kubevirt.io/api/core/v1. Spec holds both shapes: a
// VirtualMachineInstance's fields, and a VirtualMachine's template.
type document struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec *struct {
		Domain   domain    `json:"domain"`
		Networks []network `json:"networks"`
		Template *struct {
			Spec *vmiSpec `json:"spec"`
		} `json:"template"`
	} `json:"spec"`
}

// vmiSpec is a VirtualMachineInstance's spec, or a VirtualMachine's
// spec.template.spec.
type vmiSpec struct {
	Domain   domain    `json:"domain"`
	Networks []network `json:"networks"`
}

// domain is a VMI spec's domain.
type domain struct {
	Devices struct {
		Interfaces            []iface `json:"interfaces"`
		UseVirtioTransitional *bool   `json:"useVirtioTransitional"`
	} `json:"devices"`
}

// iface is an entry of spec.domain.devices.interfaces.
type iface struct {
	Name       string    `json:"name"`
	Masquerade *struct{} `json:"masquerade"`
	MacAddress string    `json:"macAddress"`
	Ports      []port    `json:"ports"`

	// The fields below are read only for a network binding plugin's
	// interface (see AddInterface). Numbers are wide so that values out
	// of range reach validation, which names the field.
	Binding *struct {
		Name string `json:"name"`
	} `json:"binding"`
	Model      string `json:"model"`
	PciAddress string `json:"pciAddress"`
	BootOrder  *int64 `json:"bootOrder"`
	ACPIIndex  int64  `json:"acpiIndex"`
}

// port is an entry of an interface's ports. Port is wide so that values
// out of range reach validation, which names the entry.
type port struct {
	Name     string `json:"name"`
	Protocol string `json:"protocol"`
	Port     int64  `json:"port"`
}

// network is an entry of spec.networks: the pod network when Pod is set.
type network struct {
	Name string      `json:"name"`
	Pod  *podNetwork `json:"pod"`
}

// podNetwork is a network's pod field.
type podNetwork struct {
	VMNetworkCIDR     string `json:"vmNetworkCIDR"`
	VMIPv6NetworkCIDR string `json:"vmIPv6NetworkCIDR"`
}

// vmiSpec checks the kind and returns the VMI spec with its field path.
func (d document) vmiSpec() (*vmiSpec, string, error) {
	g, _, _ := strings.Cut(d.APIVersion, "/")
	if g != group || (d.Kind != KindVirtualMachine && d.Kind != KindVirtualMachineInstance) {
		return nil, "", fmt.Errorf("apiVersion %q kind %q: want a %s or %s of apiVersion %s/v1",
			d.APIVersion, d.Kind, KindVirtualMachine, KindVirtualMachineInstance, group)
	}
	switch {
	case d.Spec == nil:
		return nil, "", errors.New("spec: missing")
	case d.Kind == KindVirtualMachineInstance:
		return &vmiSpec{Domain: d.Spec.Domain, Networks: d.Spec.Networks}, "spec", nil
	case d.Spec.Template == nil || d.Spec.Template.Spec == nil:
		return nil, "", errors.New("spec.template.spec: missing")
	}
	return d.Spec.Template.Spec, "spec.template.spec", nil
}

// manifest finds the interface of kind and its pod network in s, whose
// field path is path, and reads them.
func (s *vmiSpec) manifest(path string, kind interfaceKind) (Manifest, error) {
	ifPath, netPath, err := s.find(path, kind)
	if err != nil {
		return Manifest{}, err
	}
	in := s.Domain.Devices.Interfaces[ifPath.index]
	pod := s.Networks[netPath.index].Pod
	m := Manifest{Interface: in.Name}
	if m.Ports, err = readPorts(ifPath.String()+".ports", in.Ports); err != nil {
		return Manifest{}, err
	}
	if m.MAC, err = readMAC(ifPath.String()+".macAddress", in.MacAddress); err != nil {
		return Manifest{}, err
	}
	podPath := netPath.String() + ".pod"
	if m.VMCIDR, err = readCIDR(podPath+".vmNetworkCIDR", pod.VMNetworkCIDR, true); err != nil {
		return Manifest{}, err
	}
	if m.VMIPv6CIDR, err = readCIDR(podPath+".vmIPv6NetworkCIDR", pod.VMIPv6NetworkCIDR, false); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// elem is the path of a list element: list[index].
type elem struct {
	list  string
	index int
}

// String renders e as "list[index]".
func (e elem) String() string { return fmt.Sprintf("%s[%d]", e.list, e.index) }

// find returns the paths of the one interface of kind in s and of its
// network, which must be the pod network.
func (s *vmiSpec) find(path string, kind interfaceKind) (ifPath, netPath elem, err error) {
	ifList, netList := path+".domain.devices.interfaces", path+".networks"
	found := false
	for i, in := range s.Domain.Devices.Interfaces {
		if !kind.is(in) {
			continue
		}
		here := elem{ifList, i}
		if found {
			return elem{}, elem{}, fmt.Errorf("%s and %s (%q, %q): two %s interfaces; masq serves one",
				ifPath, here, s.Domain.Devices.Interfaces[ifPath.index].Name, in.Name, kind.what)
		}
		j := s.network(in.Name)
		if j < 0 {
			return elem{}, elem{}, fmt.Errorf("%s: %s interface %q has no network of that name in %s", here, kind.what, in.Name, netList)
		}
		if s.Networks[j].Pod == nil {
			return elem{}, elem{}, fmt.Errorf("%s: %s interface %q is on %s, which is not the pod network (pod: {}); masq serves only the pod network",
				here, kind.what, in.Name, elem{netList, j})
		}
		ifPath, netPath, found = here, elem{netList, j}, true
	}
	if !found {
		return elem{}, elem{}, fmt.Errorf("%s: no interface with %s on the pod network", ifList, kind.what)
	}
	return ifPath, netPath, nil
}

// network returns the index of the network called name in s, or -1.
func (s *vmiSpec) network(name string) int {
	for i, n := range s.Networks {
		if n.Name == name {
			return i
		}
	}
	return -1
}

// readPorts validates an interface's ports, at path, into a set; nil when
// there are none. An error names the entry and says what is allowed.
func readPorts(path string, in []port) (*ports.Set, error) {
	if len(in) == 0 {
		return nil, nil
	}
	ranges := make([]ports.Range, len(in))
	for i, p := range in {
		here := elem{path, i}
		var proto ports.Protocol
		switch strings.ToUpper(p.Protocol) {
		case "", "TCP":
			proto = ports.TCP
		case "UDP":
			proto = ports.UDP
		default:
			return nil, fmt.Errorf("%s (%q): protocol %q: allowed are TCP or UDP", here, p.Name, p.Protocol)
		}
		if p.Port < 1 || p.Port > math.MaxUint16 { // a TCP/UDP port is 16 bits; 0 is no port
			return nil, fmt.Errorf("%s (%q): port %d: allowed are 1 to 65535", here, p.Name, p.Port)
		}
		if ports.Reserved(uint16(p.Port)) {
			return nil, fmt.Errorf("%s (%q): port %d: ports %d and %d belong to libvirt's migration and are never forwarded",
				here, p.Name, p.Port, ports.LibvirtMigration1, ports.LibvirtMigration2)
		}
		ranges[i] = ports.Range{Proto: proto, First: uint16(p.Port), Last: uint16(p.Port)}
	}
	set, err := ports.New(ranges...)
	if err != nil { // unreachable: every range was checked above
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &set, nil
}

// readMAC parses the macAddress field at path; "" is no address.
func readMAC(path, s string) (net.HardwareAddr, error) {
	if s == "" {
		return nil, nil
	}
	mac, err := net.ParseMAC(s)
	if err != nil || len(mac) != 6 {
		return nil, fmt.Errorf("%s %q: want a 48-bit MAC address like 02:00:00:0a:0b:0c", path, s)
	}
	return mac, nil
}

// readCIDR parses the CIDR field at path, of IPv4 when v4, else IPv6; ""
// is the zero Prefix.
func readCIDR(path, s string, v4 bool) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, nil
	}
	family, example := "IPv6", "fd10:0:2::/120"
	if v4 {
		family, example = "IPv4", "10.0.2.0/24"
	}
	p, err := netip.ParsePrefix(s)
	if err != nil || p.Addr().Is4() != v4 {
		return netip.Prefix{}, fmt.Errorf("%s %q: want an %s network in CIDR form, like %s", path, s, family, example)
	}
	return p, nil
}
