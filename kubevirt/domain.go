package kubevirt

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// DefaultPort is the TCP port on 127.0.0.1 of the launcher pod where masq
// takes QEMU's connection. It lies in the kernel's default ephemeral range
// (32768–60999), which masq does not forward to the guest unless told to,
// so the guest's forwarded ports never collide with it; and below
// libvirt's migration range (49152–49215).
const DefaultPort = 40400

// DomainOptions says which interface AddInterface connects and where.
type DomainOptions struct {
	// Binding is the plugin's name as the VMI's interfaces name it;
	// "" is DefaultBinding.
	Binding string

	// Port is masq's TCP port on 127.0.0.1; 0 is DefaultPort.
	Port uint16

	// VhostUser, when set, makes the interface vhost-user instead: QEMU
	// connects to masq's vhost-user socket at this path (in the hooks
	// directory, which the sidecar and the compute container share) and
	// the domain's memory becomes shared memfd, which vhost-user needs
	// (see InsertVhostUserInterface). Port is then unused.
	VhostUser string
}

// DefaultVhostUserSocket is where the sidecar's masq listens for QEMU
// with the vhost-user binding: the hooks directory is the one the
// sidecar shares with virt-launcher's compute container.
const DefaultVhostUserSocket = "/var/run/kubevirt-hooks/masq-vhost.sock"

// AddInterface is the domain transformation of masq's network binding
// plugin, a pure function. Given the libvirt domain XML KubeVirt generated
// and the VirtualMachineInstance (JSON, as KubeVirt's OnDefineDomain hook
// passes both), it returns the XML with an <interface> for the VMI's
// interface bound to opts.Binding (see ParseVMI) that points QEMU at masq
// (see InterfaceXML). Everything else is left byte for byte as it was.
// Errors from the VMI name its field; ErrNoBoundInterface is wrapped when
// no interface uses the plugin.
func AddInterface(domainXML, vmi []byte, opts DomainOptions) ([]byte, error) {
	binding, port := opts.Binding, opts.Port
	if binding == "" {
		binding = DefaultBinding
	}
	if port == 0 {
		port = DefaultPort
	}
	in, err := ParseVMI(vmi, binding)
	if err != nil {
		return nil, fmt.Errorf("VMI: %w", err)
	}
	var out []byte
	if opts.VhostUser != "" {
		out, err = InsertVhostUserInterface(domainXML, in, opts.VhostUser)
	} else {
		out, err = InsertInterface(domainXML, in, port)
	}
	if err != nil {
		return nil, fmt.Errorf("domain XML: %w", err)
	}
	return out, nil
}

// InsertInterface returns domainXML with in's <interface> (see
// InterfaceXML) as the last child of <devices>, indented like its
// siblings. An <interface> already there with in's alias (ua-NAME) is
// replaced instead, so that calling it twice changes nothing more. The
// rest of domainXML is kept byte for byte: the element is spliced into
// the text, never re-marshalled, which would reorder and reformat it.
func InsertInterface(domainXML []byte, in BoundInterface, port uint16) ([]byte, error) {
	if port == 0 {
		return nil, errors.New("port 0: want masq's TCP port, 1 to 65535")
	}
	head := `<interface type="client">`
	source := fmt.Sprintf(`<source address="127.0.0.1" port="%d"/>`, port)
	return spliceInterface(domainXML, in, func(newline, step string) string {
		return interfaceXML(in, head, source, newline, step)
	})
}

// InsertVhostUserInterface is InsertInterface for the vhost-user form:
// a vhostuser <interface> whose QEMU connects (mode "client") to masq's
// socket at path, and the domain's memory shared memfd, without which
// QEMU cannot share it: a <memoryBacking> is added as <devices>' sibling,
// or the one there gets <source type="memfd"/> (unless its source is a
// file or memfd already) and <access mode="shared"/>, keeping the rest
// (hugepages, say). Calling it twice changes nothing more.
func InsertVhostUserInterface(domainXML []byte, in BoundInterface, path string) ([]byte, error) {
	if path == "" || !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("vhost-user socket %q: want an absolute path", path)
	}
	if !strings.HasPrefix(in.Model, "virtio") {
		return nil, fmt.Errorf("interface %q: model %s: vhost-user serves only a virtio NIC", in.Name, in.Model)
	}
	head := `<interface type="vhostuser">`
	source := fmt.Sprintf(`<source type="unix" path="%s" mode="client"/>`, escape(path))
	out, err := spliceInterface(domainXML, in, func(newline, step string) string {
		return interfaceXML(in, head, source, newline, step)
	})
	if err != nil {
		return nil, err
	}
	return shareMemory(out)
}

// spliceInterface puts the <interface> render makes (given the newline
// and indentation before each child line, and the indentation step) in
// domainXML as InsertInterface says.
func spliceInterface(domainXML []byte, in BoundInterface, render func(newline, step string) string) ([]byte, error) {
	sp, err := scanDomain(domainXML, "ua-"+in.Name)
	if err != nil {
		return nil, err
	}
	at, end := sp.devicesEnd, sp.devicesEnd // insert before </devices>
	if sp.ifaceStart >= 0 {
		at, end = sp.ifaceStart, sp.ifaceEnd // replace
	}
	indent := lineIndent(domainXML, at)
	lineStart := at - len(indent)
	pretty := lineStart > 0 && domainXML[lineStart-1] == '\n'
	var elem string
	switch {
	case !pretty: // XML on one line stays so
		elem = render("", "")
	case at == end: // </devices> on its own line: the element gets lines of
		// its own before it, one level (two spaces, KubeVirt's) deeper
		child := indent + "  "
		at, end, elem = lineStart, lineStart, child+render("\n"+child, "  ")+"\n"
	default: // the old element's first line keeps its indentation
		elem = render("\n"+indent, "  ")
	}
	return splice(domainXML, at, end, elem), nil
}

// splice returns data with data[at:end] replaced by elem.
func splice(data []byte, at, end int, elem string) []byte {
	out := make([]byte, 0, len(data)-(end-at)+len(elem))
	out = append(out, data[:at]...)
	out = append(out, elem...)
	return append(out, data[end:]...)
}

// InterfaceXML renders in's <interface> (without a trailing newline) with
// every line after the first indented by indent: a virtio (or in.Model)
// NIC whose backend is QEMU's socket netdev connecting to masq at
// 127.0.0.1:port (libvirt's type "client": a 4-byte big-endian length
// before each Ethernet frame). It has KubeVirt's user alias ua-NAME, so
// KubeVirt finds the device as the interface's; and no <mtu>, which
// libvirt refuses on a "client" interface: the guest learns the MTU from
// masq's DHCP (option 26).
func InterfaceXML(in BoundInterface, port uint16, indent string) string {
	return interfaceXML(in, `<interface type="client">`,
		fmt.Sprintf(`<source address="127.0.0.1" port="%d"/>`, port), "\n"+indent, "  ")
}

// interfaceXML renders in's <interface>, its start tag head and its
// first child source, with newline (a newline and the element's
// indentation, or "" for XML on one line) before each child, indented by
// step more, and before the end tag.
func interfaceXML(in BoundInterface, head, source, newline, step string) string {
	var b strings.Builder
	line := func(format string, args ...any) {
		b.WriteString(newline + step)
		fmt.Fprintf(&b, format, args...)
	}
	b.WriteString(head)
	line("%s", source)
	line(`<model type="%s"/>`, escape(in.Model))
	if in.MAC != nil {
		line(`<mac address="%s"/>`, in.MAC)
	}
	line(`<alias name="ua-%s"/>`, escape(in.Name))
	if in.BootOrder > 0 {
		line(`<boot order="%d"/>`, in.BootOrder)
	} else { // KubeVirt's choice: no iPXE ROM unless the guest boots from the NIC
		line(`<rom enabled="no"/>`)
	}
	if in.ACPIIndex > 0 {
		line(`<acpi index="%d"/>`, in.ACPIIndex)
	}
	if a := in.PCI; a != nil {
		line(`<address type="pci" domain="0x%04x" bus="0x%02x" slot="0x%02x" function="0x%x"/>`,
			a.Domain, a.Bus, a.Slot, a.Function)
	}
	b.WriteString(newline + "</interface>")
	return b.String()
}

// escape returns s escaped for an XML attribute value.
func escape(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s)) // cannot fail: a Builder's Write does not
	return b.String()
}

// lineIndent returns the spaces and tabs just before offset at in data.
func lineIndent(data []byte, at int) string {
	i := at
	for i > 0 && (data[i-1] == ' ' || data[i-1] == '\t') {
		i--
	}
	return string(data[i:at])
}

// domainSpans are the byte offsets InsertInterface splices at.
type domainSpans struct {
	devicesEnd int // where </devices> begins

	// ifaceStart and ifaceEnd bound an existing <interface> with the
	// alias looked for; -1 when there is none.
	ifaceStart, ifaceEnd int
}

// scanDomain checks that data is a libvirt <domain> with a <devices>
// element and finds where its </devices> begins and the bounds of the
// <interface> child of devices whose <alias name> is alias, if any.
func scanDomain(data []byte, alias string) (domainSpans, error) {
	sp := domainSpans{devicesEnd: -1, ifaceStart: -1, ifaceEnd: -1}
	d := xml.NewDecoder(bytes.NewReader(data))
	var path []string
	start, match := 0, false // the <interface> being read
	for {
		before := int(d.InputOffset())
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return domainSpans{}, fmt.Errorf("not well-formed XML: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			path = append(path, t.Name.Local)
			if len(path) > maxDomainDepth {
				return domainSpans{}, fmt.Errorf("elements nested deeper than %d: not a libvirt domain", maxDomainDepth)
			}
			switch pathOf(path) {
			case "domain/devices/interface":
				start, match = before, false
			case "domain/devices/interface/alias":
				match = match || attr(t, "name") == alias
			}
			if len(path) == 1 && t.Name.Local != "domain" {
				return domainSpans{}, fmt.Errorf("root element <%s>: want a libvirt <domain>", t.Name.Local)
			}
		case xml.EndElement:
			switch pathOf(path) {
			case "domain/devices/interface":
				if match && sp.ifaceStart >= 0 {
					return domainSpans{}, fmt.Errorf("two <interface> elements with alias %q", alias)
				}
				if match {
					sp.ifaceStart, sp.ifaceEnd = start, int(d.InputOffset())
				}
			case "domain/devices":
				if int(d.InputOffset()) == before { // <devices/>: no end tag to insert before
					return domainSpans{}, errors.New("<devices/> is empty: want KubeVirt's domain with its devices")
				}
				sp.devicesEnd = before
			}
			path = path[:len(path)-1]
		}
	}
	if sp.devicesEnd < 0 {
		return domainSpans{}, errors.New("no <devices> in <domain>")
	}
	return sp, nil
}

// maxDomainDepth bounds the nesting of a domain's elements: libvirt's
// domain XML is a few levels deep, and a hostile input thousands of levels
// deep must not cost the hook seconds.
const maxDomainDepth = 64

// pathOf joins the first four elements of path, all scanDomain looks at
// ("" deeper), so each token costs the same whatever the depth.
func pathOf(path []string) string {
	if len(path) > 4 {
		return ""
	}
	return strings.Join(path, "/")
}

// attr returns the value of e's attribute called name, "" when absent.
func attr(e xml.StartElement, name string) string {
	for _, a := range e.Attr {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}
