package hook

import (
	"reflect"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

func TestMessagesRoundTrip(t *testing.T) {
	tests := []struct{ in, out message }{
		{&InfoResult{Name: "n", Versions: []string{"v1alpha3", "v1alpha2"},
			HookPoints: []HookPoint{{Name: "OnDefineDomain", Priority: -3}, {Name: "Shutdown", Priority: 7}}}, &InfoResult{}},
		{&OnDefineDomainParams{DomainXML: []byte("<domain/>"), VMI: []byte("{}")}, &OnDefineDomainParams{}},
		{&OnDefineDomainResult{DomainXML: []byte("<domain/>")}, &OnDefineDomainResult{}},
		{&PreCloudInitIsoParams{CloudInitNoCloudSource: []byte("a"), VMI: []byte("b"), CloudInitData: []byte("c")}, &PreCloudInitIsoParams{}},
		{&PreCloudInitIsoResult{CloudInitNoCloudSource: []byte("a"), CloudInitData: []byte("c")}, &PreCloudInitIsoResult{}},
	}
	for _, tt := range tests {
		if err := tt.out.unmarshal(tt.in.marshal(nil)); err != nil {
			t.Errorf("%T: %v", tt.in, err)
		} else if !reflect.DeepEqual(tt.in, tt.out) {
			t.Errorf("%T: got %+v, want %+v", tt.in, tt.out, tt.in)
		}
	}
}

// TestWireForm checks the encoding against bytes written by hand from the
// .proto's field numbers, and that unknown fields are skipped.
func TestWireForm(t *testing.T) {
	got := (&OnDefineDomainParams{DomainXML: []byte("ab"), VMI: []byte("c")}).marshal(nil)
	if want := []byte{0x0a, 2, 'a', 'b', 0x12, 1, 'c'}; string(got) != string(want) {
		t.Errorf("OnDefineDomainParams = % x, want % x", got, want)
	}
	got = (&InfoResult{Name: "x", HookPoints: []HookPoint{{Name: "y", Priority: 1}}, Versions: []string{"z"}}).marshal(nil)
	if want := []byte{0x0a, 1, 'x', 0x1a, 5, 0x0a, 1, 'y', 0x10, 1, 0x22, 1, 'z'}; string(got) != string(want) {
		t.Errorf("InfoResult = % x, want % x", got, want)
	}
	// InfoParams from a newer KubeVirt: repeated string field 1, a varint 9.
	var b []byte
	b = protowire.AppendString(protowire.AppendTag(b, 1, protowire.BytesType), "v1alpha3")
	b = protowire.AppendVarint(protowire.AppendTag(b, 9, protowire.VarintType), 300)
	if err := (&InfoParams{}).unmarshal(b); err != nil {
		t.Errorf("InfoParams with unknown fields: %v", err)
	}
	var p OnDefineDomainParams
	if err := p.unmarshal(append(b, 0x0a, 1, 'd')); err != nil || string(p.DomainXML) != "d" {
		t.Errorf("OnDefineDomainParams with unknown fields = %+v, %v", p, err)
	}
}

func TestMessagesMalformed(t *testing.T) {
	for name, b := range map[string][]byte{
		"truncated length": {0x0a, 5, 'a'},
		"wrong wire type":  {0x08, 1},          // field 1 as a varint
		"bad tag":          {0x80},             // unfinished varint
		"bad group":        {0x0b, 0x0a, 0x00}, // start group never ended
	} {
		if err := (&OnDefineDomainParams{}).unmarshal(b); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
