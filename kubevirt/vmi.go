package kubevirt

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// DefaultBinding is the name masq's network binding plugin is registered
// under in the KubeVirt CR (spec.configuration.network.binding.masq) and
// named by a VMI's interface (binding: {name: masq}).
const DefaultBinding = "masq"

// ErrNoBoundInterface is wrapped by ParseVMI's error when the VMI has no
// interface bound to the plugin: the hook was called for a VM that does
// not use masq.
var ErrNoBoundInterface = errors.New("no interface bound to the plugin")

// BoundInterface is a VMI's interface bound to a network binding plugin,
// with what its domain <interface> needs. The zero value of each optional
// field leaves the choice to libvirt.
type BoundInterface struct {
	// Name is the interface's name, also its network's; KubeVirt's alias
	// for the device is "ua-" + Name.
	Name string

	// MAC is the interface's macAddress; nil when absent, and libvirt
	// then generates one (52:54:00:…), as it does for KubeVirt's own
	// masquerade binding.
	MAC net.HardwareAddr

	// Model is libvirt's model type: virtio-non-transitional for virtio
	// (virtio-transitional with spec.domain.devices.useVirtioTransitional),
	// else the VMI's model as written (e1000, e1000e, ...).
	Model string

	// PCI is the interface's pciAddress; nil when absent.
	PCI *PCIAddress

	// BootOrder is the interface's bootOrder; 0 when it is not a boot
	// device, and its option ROM is then turned off, as KubeVirt does.
	BootOrder uint

	// ACPIIndex is the interface's acpiIndex; 0 when absent.
	ACPIIndex uint
}

// PCIAddress is a PCI address in KubeVirt's pciAddress form,
// DDDD:BB:SS.F (e.g. 0000:81:01.0).
type PCIAddress struct {
	Domain   uint16
	Bus      uint8
	Slot     uint8 // 0..31
	Function uint8 // 0..7
}

// models are the interface models KubeVirt accepts (spec.domain.devices.
// interfaces[].model); "virtio" becomes a virtio-(non-)transitional type.
var models = []string{"virtio", "e1000", "e1000e", "igb", "ne2k_pci", "pcnet", "rtl8139"}

// ParseVMI finds, in a VirtualMachineInstance in JSON (as KubeVirt's
// hook passes it) or YAML, the one interface whose binding.name is
// binding, checks that it is on the pod network, and reads it. A
// VirtualMachine's template is read the same way, for trying things by
// hand. apiVersion and kind may be absent, as they are in the hook's VMI.
// An error names the field; with no such interface it wraps
// ErrNoBoundInterface.
func ParseVMI(data []byte, binding string) (BoundInterface, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return BoundInterface{}, errors.New("empty VMI: want a VirtualMachineInstance in JSON")
	}
	var doc document
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return BoundInterface{}, fmt.Errorf("not a VirtualMachineInstance in JSON or YAML: %w", err)
	}
	if doc.APIVersion == "" && doc.Kind == "" {
		doc.APIVersion, doc.Kind = group+"/v1", KindVirtualMachineInstance
	}
	spec, path, err := doc.vmiSpec()
	if err != nil {
		return BoundInterface{}, err
	}
	i, err := spec.bound(path, binding)
	if err != nil {
		return BoundInterface{}, err
	}
	useTransitional := spec.Domain.Devices.UseVirtioTransitional
	return readBound(elem{path + ".domain.devices.interfaces", i}, spec.Domain.Devices.Interfaces[i],
		useTransitional != nil && *useTransitional)
}

// bound returns the index of the one interface in s bound to binding,
// whose network must be the pod network; path is s's field path.
func (s *vmiSpec) bound(path, binding string) (int, error) {
	ifList, netList := path+".domain.devices.interfaces", path+".networks"
	found := -1
	for i, in := range s.Domain.Devices.Interfaces {
		if in.Binding == nil || in.Binding.Name != binding {
			continue
		}
		here := elem{ifList, i}
		if found >= 0 {
			return 0, fmt.Errorf("%s and %s (%q, %q): two interfaces with binding %q; masq serves one",
				elem{ifList, found}, here, s.Domain.Devices.Interfaces[found].Name, in.Name, binding)
		}
		j := s.network(in.Name)
		if j < 0 {
			return 0, fmt.Errorf("%s: interface %q has no network of that name in %s", here, in.Name, netList)
		}
		if s.Networks[j].Pod == nil {
			return 0, fmt.Errorf("%s: interface %q is on %s, which is not the pod network (pod: {}); masq serves only the pod network",
				here, in.Name, elem{netList, j})
		}
		found = i
	}
	if found < 0 {
		return 0, fmt.Errorf("%s: %w: want one with binding: {name: %s}", ifList, ErrNoBoundInterface, binding)
	}
	return found, nil
}

// readBound reads and checks the bound interface in, at path.
func readBound(path elem, in iface, useTransitional bool) (BoundInterface, error) {
	b := BoundInterface{Name: in.Name}
	p := path.String()
	if in.Name == "" {
		return BoundInterface{}, fmt.Errorf("%s.name: missing", p)
	}
	var err error
	if b.MAC, err = readMAC(p+".macAddress", in.MacAddress); err != nil {
		return BoundInterface{}, err
	}
	if b.Model, err = readModel(p+".model", in.Model, useTransitional); err != nil {
		return BoundInterface{}, err
	}
	if in.PciAddress != "" {
		a, err := ParsePCIAddress(in.PciAddress)
		if err != nil {
			return BoundInterface{}, fmt.Errorf("%s.pciAddress: %w", p, err)
		}
		b.PCI = &a
	}
	if in.BootOrder != nil {
		if *in.BootOrder < 1 || *in.BootOrder > math.MaxInt32 {
			return BoundInterface{}, fmt.Errorf("%s.bootOrder %d: want 1 or more", p, *in.BootOrder)
		}
		b.BootOrder = uint(*in.BootOrder)
	}
	if in.ACPIIndex < 0 || in.ACPIIndex > math.MaxInt32 {
		return BoundInterface{}, fmt.Errorf("%s.acpiIndex %d: want 0 (none) or more", p, in.ACPIIndex)
	}
	b.ACPIIndex = uint(in.ACPIIndex)
	return b, nil
}

// readModel maps the model field at path to libvirt's model type.
func readModel(path, model string, useTransitional bool) (string, error) {
	switch {
	case model == "" || model == "virtio":
		if useTransitional {
			return "virtio-transitional", nil
		}
		return "virtio-non-transitional", nil
	case slices.Contains(models, model):
		return model, nil
	}
	return "", fmt.Errorf("%s %q: allowed are %s", path, model, strings.Join(models, ", "))
}

// ParsePCIAddress parses a PCI address in KubeVirt's form DDDD:BB:SS.F,
// hexadecimal: domain, bus, slot (at most 1f) and function (at most 7).
func ParsePCIAddress(s string) (PCIAddress, error) {
	bad := fmt.Errorf("%q: want a PCI address DDDD:BB:SS.F in hexadecimal, like 0000:81:01.0", s)
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return PCIAddress{}, bad
	}
	slot, fn, ok := strings.Cut(parts[2], ".")
	if !ok {
		return PCIAddress{}, bad
	}
	var v [4]uint64
	for i, f := range []struct {
		text   string
		digits int
		max    uint64
	}{{parts[0], 4, 0xffff}, {parts[1], 2, 0xff}, {slot, 2, 0x1f}, {fn, 1, 7}} {
		n, err := strconv.ParseUint(f.text, 16, 16)
		if err != nil || len(f.text) != f.digits || n > f.max {
			return PCIAddress{}, bad
		}
		v[i] = n
	}
	return PCIAddress{Domain: uint16(v[0]), Bus: uint8(v[1]), Slot: uint8(v[2]), Function: uint8(v[3])}, nil
}
