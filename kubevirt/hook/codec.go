package hook

import (
	"fmt"

	"google.golang.org/grpc/encoding"
)

// codec is gRPC's "proto" codec for the hook API's hand-written messages.
// It is set with grpc.ForceServerCodec on the hook's server only (and
// grpc.ForceCodec on a client's calls), never registered globally.
type codec struct{}

var _ encoding.Codec = codec{}

// Name implements encoding.Codec.Name: the content subtype virt-launcher's
// client sends, application/grpc+proto.
func (codec) Name() string { return "proto" }

// Marshal implements encoding.Codec.Marshal.
func (codec) Marshal(v any) ([]byte, error) {
	m, ok := v.(message)
	if !ok {
		return nil, fmt.Errorf("hook codec: cannot marshal %T", v)
	}
	return m.marshal(nil), nil
}

// Unmarshal implements encoding.Codec.Unmarshal. v keeps no reference to
// data.
func (codec) Unmarshal(data []byte, v any) error {
	m, ok := v.(message)
	if !ok {
		return fmt.Errorf("hook codec: cannot unmarshal into %T", v)
	}
	if err := m.unmarshal(data); err != nil {
		return fmt.Errorf("hook codec: %T: %w", v, err)
	}
	return nil
}
