package hook

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// The messages of KubeVirt's hook API, written by hand from its .proto
// files (pkg/hooks/info/api_info.proto, package kubevirt.hooks.info, and
// pkg/hooks/v1alpha3/api_v1alpha3.proto, package kubevirt.hooks.v1alpha3)
// with protowire: there is no protoc here, and generated code would bring
// reflection for six tiny messages. Field numbers are the .proto's.
// Unmarshal skips fields it does not know, as proto3 does; Marshal leaves
// out fields with zero values, as proto3 does.

// message is a hook API message the codec can carry.
type message interface {
	marshal(b []byte) []byte // appends the wire form to b
	unmarshal(b []byte) error
}

// InfoParams is kubevirt.hooks.info.InfoParams. It has no field masq
// reads; newer KubeVirts may send some, which are skipped.
type InfoParams struct{}

// InfoResult is kubevirt.hooks.info.InfoResult: who the hook is.
type InfoResult struct {
	Name       string      // 1: the hook's name
	HookPoints []HookPoint // 3: the hook points it subscribes to
	Versions   []string    // 4: the Callbacks versions it implements
}

// HookPoint is kubevirt.hooks.info.HookPoint.
type HookPoint struct {
	Name     string // 1: e.g. OnDefineDomain
	Priority int32  // 2: hooks run by priority, then name
}

// OnDefineDomainParams is kubevirt.hooks.v1alpha3.OnDefineDomainParams.
type OnDefineDomainParams struct {
	DomainXML []byte // 1: the libvirt domain XML KubeVirt generated
	VMI       []byte // 2: the VirtualMachineInstance, in JSON
}

// OnDefineDomainResult is kubevirt.hooks.v1alpha3.OnDefineDomainResult.
type OnDefineDomainResult struct {
	DomainXML []byte // 1: the domain XML libvirt is to use
}

// PreCloudInitIsoParams is kubevirt.hooks.v1alpha3.PreCloudInitIsoParams.
type PreCloudInitIsoParams struct {
	CloudInitNoCloudSource []byte // 1: legacy, JSON
	VMI                    []byte // 2: the VirtualMachineInstance, in JSON
	CloudInitData          []byte // 3: JSON
}

// PreCloudInitIsoResult is kubevirt.hooks.v1alpha3.PreCloudInitIsoResult.
type PreCloudInitIsoResult struct {
	CloudInitNoCloudSource []byte // 1: legacy, JSON
	CloudInitData          []byte // 3: JSON
}

// ShutdownParams is kubevirt.hooks.v1alpha3.ShutdownParams (empty).
type ShutdownParams struct{}

// ShutdownResult is kubevirt.hooks.v1alpha3.ShutdownResult (empty).
type ShutdownResult struct{}

var (
	_ message = (*InfoParams)(nil)
	_ message = (*InfoResult)(nil)
	_ message = (*HookPoint)(nil)
	_ message = (*OnDefineDomainParams)(nil)
	_ message = (*OnDefineDomainResult)(nil)
	_ message = (*PreCloudInitIsoParams)(nil)
	_ message = (*PreCloudInitIsoResult)(nil)
	_ message = (*ShutdownParams)(nil)
	_ message = (*ShutdownResult)(nil)
)

func (*InfoParams) marshal(b []byte) []byte { return b }
func (*InfoParams) unmarshal(b []byte) error {
	return walk(b, func(protowire.Number, protowire.Type, []byte) (int, error) { return skip, nil })
}

func (m *InfoResult) marshal(b []byte) []byte {
	b = appendString(b, 1, m.Name)
	for _, p := range m.HookPoints {
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		b = protowire.AppendBytes(b, p.marshal(nil))
	}
	for _, v := range m.Versions {
		b = protowire.AppendTag(b, 4, protowire.BytesType)
		b = protowire.AppendString(b, v)
	}
	return b
}

func (m *InfoResult) unmarshal(b []byte) error {
	*m = InfoResult{}
	return walk(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		if num != 1 && num != 3 && num != 4 {
			return skip, nil
		}
		var v []byte
		n, err := consumeBytes(typ, b, &v)
		if err != nil {
			return 0, err
		}
		switch num {
		case 1:
			m.Name = string(v)
		case 3:
			var p HookPoint
			if err := p.unmarshal(v); err != nil {
				return 0, fmt.Errorf("hookPoints: %w", err)
			}
			m.HookPoints = append(m.HookPoints, p)
		case 4:
			m.Versions = append(m.Versions, string(v))
		}
		return n, nil
	})
}

func (m *HookPoint) marshal(b []byte) []byte {
	b = appendString(b, 1, m.Name)
	if m.Priority != 0 {
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int64(m.Priority))) // int32: sign-extended
	}
	return b
}

func (m *HookPoint) unmarshal(b []byte) error {
	*m = HookPoint{}
	return walk(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch num {
		case 1:
			var v []byte
			n, err := consumeBytes(typ, b, &v)
			m.Name = string(v)
			return n, err
		case 2:
			if typ != protowire.VarintType {
				return 0, errWireType
			}
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return 0, protowire.ParseError(n)
			}
			m.Priority = int32(v) // int32 keeps the low 32 bits, as proto does
			return n, nil
		}
		return skip, nil
	})
}

func (m *OnDefineDomainParams) marshal(b []byte) []byte {
	return appendBytes(appendBytes(b, 1, m.DomainXML), 2, m.VMI)
}

func (m *OnDefineDomainParams) unmarshal(b []byte) error {
	*m = OnDefineDomainParams{}
	return bytesFields(b, map[protowire.Number]*[]byte{1: &m.DomainXML, 2: &m.VMI})
}

func (m *OnDefineDomainResult) marshal(b []byte) []byte { return appendBytes(b, 1, m.DomainXML) }

func (m *OnDefineDomainResult) unmarshal(b []byte) error {
	*m = OnDefineDomainResult{}
	return bytesFields(b, map[protowire.Number]*[]byte{1: &m.DomainXML})
}

func (m *PreCloudInitIsoParams) marshal(b []byte) []byte {
	return appendBytes(appendBytes(appendBytes(b, 1, m.CloudInitNoCloudSource), 2, m.VMI), 3, m.CloudInitData)
}

func (m *PreCloudInitIsoParams) unmarshal(b []byte) error {
	*m = PreCloudInitIsoParams{}
	return bytesFields(b, map[protowire.Number]*[]byte{1: &m.CloudInitNoCloudSource, 2: &m.VMI, 3: &m.CloudInitData})
}

func (m *PreCloudInitIsoResult) marshal(b []byte) []byte {
	return appendBytes(appendBytes(b, 1, m.CloudInitNoCloudSource), 3, m.CloudInitData)
}

func (m *PreCloudInitIsoResult) unmarshal(b []byte) error {
	*m = PreCloudInitIsoResult{}
	return bytesFields(b, map[protowire.Number]*[]byte{1: &m.CloudInitNoCloudSource, 3: &m.CloudInitData})
}

func (*ShutdownParams) marshal(b []byte) []byte { return b }
func (*ShutdownParams) unmarshal(b []byte) error {
	return walk(b, func(protowire.Number, protowire.Type, []byte) (int, error) { return skip, nil })
}

func (*ShutdownResult) marshal(b []byte) []byte { return b }
func (*ShutdownResult) unmarshal(b []byte) error {
	return walk(b, func(protowire.Number, protowire.Type, []byte) (int, error) { return skip, nil })
}

// skip, returned by a walk callback, asks walk to skip the field.
const skip = -1 << 30

// errWireType is a known field sent with another wire type than the
// .proto's.
var errWireType = errors.New("field of the wrong wire type")

// walk calls field for each field in the message b, with the bytes
// after its tag. field returns how many bytes it consumed, or skip.
func walk(b []byte, field func(protowire.Number, protowire.Type, []byte) (int, error)) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		n, err := field(num, typ, b)
		if err != nil {
			return fmt.Errorf("field %d: %w", num, err)
		}
		if n == skip {
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
	}
	return nil
}

// bytesFields unmarshals a message of bytes fields only into dst, by
// field number; the last occurrence of a field wins, as in proto3.
func bytesFields(b []byte, dst map[protowire.Number]*[]byte) error {
	return walk(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		p, ok := dst[num]
		if !ok {
			return skip, nil
		}
		return consumeBytes(typ, b, p)
	})
}

// consumeBytes reads a length-delimited value from b into *dst as a copy
// (gRPC reuses b once Unmarshal returns) and returns the bytes consumed.
func consumeBytes(typ protowire.Type, b []byte, dst *[]byte) (int, error) {
	if typ != protowire.BytesType {
		return 0, errWireType
	}
	v, n := protowire.ConsumeBytes(b)
	if n < 0 {
		return 0, protowire.ParseError(n)
	}
	*dst = append([]byte(nil), v...)
	return n, nil
}

// appendBytes appends field num with value v, unless v is empty.
func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	return protowire.AppendBytes(protowire.AppendTag(b, num, protowire.BytesType), v)
}

// appendString appends field num with value v, unless v is empty.
func appendString(b []byte, num protowire.Number, v string) []byte {
	if v == "" {
		return b
	}
	return protowire.AppendString(protowire.AppendTag(b, num, protowire.BytesType), v)
}
