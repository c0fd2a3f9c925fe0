package hook

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/masqnet/masq/kubevirt"
)

// serving is a Serve running in a goroutine: done is closed when it has
// returned err.
type serving struct {
	done chan struct{}
	err  error
}

// startServer serves the hook on a unix socket in a temporary directory
// and returns a client connection; cleanup stops both, checks that Serve
// returned nil, and that no goroutine is left.
func startServer(t *testing.T, s *Server) (*grpc.ClientConn, *serving) {
	t.Helper()
	t.Cleanup(func() { goleak.VerifyNone(t) }) // runs last
	sock := filepath.Join(t.TempDir(), "masq.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := &serving{done: make(chan struct{})}
	go func() {
		defer close(served.done)
		served.err = s.Serve(ctx, l)
	}()
	conn, err := grpc.NewClient("unix://"+sock,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(codec{})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		cancel()
		select {
		case <-served.done:
			if served.err != nil {
				t.Errorf("Serve: %v", served.err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after its context ended")
		}
	})
	return conn, served
}

func invoke(t *testing.T, conn *grpc.ClientConn, method string, in, out message) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return conn.Invoke(ctx, method, in, out)
}

func TestHook(t *testing.T) {
	conn, _ := startServer(t, &Server{Domain: kubevirt.DomainOptions{Port: 4321}})

	var info InfoResult
	if err := invoke(t, conn, "/kubevirt.hooks.info.Info/Info", &InfoParams{}, &info); err != nil {
		t.Fatal(err)
	}
	want := InfoResult{Name: DefaultName, Versions: []string{"v1alpha3"},
		HookPoints: []HookPoint{{Name: "OnDefineDomain"}, {Name: "Shutdown"}}}
	if !reflect.DeepEqual(info, want) {
		t.Errorf("Info = %+v, want %+v", info, want)
	}

	dom, vmi := readFile(t, "domain-basic.xml"), readFile(t, "vmi-basic.json")
	var res OnDefineDomainResult
	if err := invoke(t, conn, "/kubevirt.hooks.v1alpha3.Callbacks/OnDefineDomain",
		&OnDefineDomainParams{DomainXML: dom, VMI: vmi}, &res); err != nil {
		t.Fatal(err)
	}
	wantXML, err := kubevirt.AddInterface(dom, vmi, kubevirt.DomainOptions{Port: 4321})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(res.DomainXML, wantXML) || !bytes.Contains(res.DomainXML, []byte(`<source address="127.0.0.1" port="4321"/>`)) {
		t.Errorf("OnDefineDomain returned\n%s\nwant\n%s", res.DomainXML, wantXML)
	}

	err = invoke(t, conn, "/kubevirt.hooks.v1alpha3.Callbacks/OnDefineDomain",
		&OnDefineDomainParams{DomainXML: dom, VMI: []byte(`{"spec":{}}`)}, &res)
	if status.Code(err) != codes.InvalidArgument || !bytes.Contains([]byte(err.Error()), []byte("no interface bound")) {
		t.Errorf("OnDefineDomain of a VMI without masq: error %v, want InvalidArgument naming the missing interface", err)
	}

	cloud := PreCloudInitIsoParams{CloudInitNoCloudSource: []byte(`{"userData":"x"}`), VMI: vmi, CloudInitData: []byte(`{"NoCloudMetaData":{}}`)}
	var cloudRes PreCloudInitIsoResult
	if err := invoke(t, conn, "/kubevirt.hooks.v1alpha3.Callbacks/PreCloudInitIso", &cloud, &cloudRes); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(cloudRes.CloudInitData, cloud.CloudInitData) || !bytes.Equal(cloudRes.CloudInitNoCloudSource, cloud.CloudInitNoCloudSource) {
		t.Errorf("PreCloudInitIso changed the data: %+v", cloudRes)
	}
}

func TestShutdownEndsServe(t *testing.T) {
	conn, served := startServer(t, &Server{})
	if err := invoke(t, conn, "/kubevirt.hooks.v1alpha3.Callbacks/Shutdown", &ShutdownParams{}, &ShutdownResult{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-served.done:
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after Shutdown")
	}
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("../../testdata/kubevirt", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestOnVMI(t *testing.T) {
	dom, vmi := readFile(t, "domain-basic.xml"), readFile(t, "vmi-basic.json")
	var got []byte
	conn, _ := startServer(t, &Server{OnVMI: func(v []byte) error { got = v; return nil }})
	var res OnDefineDomainResult
	if err := invoke(t, conn, "/kubevirt.hooks.v1alpha3.Callbacks/OnDefineDomain",
		&OnDefineDomainParams{DomainXML: dom, VMI: vmi}, &res); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, vmi) {
		t.Errorf("OnVMI got %q, want the call's VMI", got)
	}
}

func TestOnVMIFails(t *testing.T) {
	dom, vmi := readFile(t, "domain-basic.xml"), readFile(t, "vmi-basic.json")
	var res OnDefineDomainResult
	failing, _ := startServer(t, &Server{OnVMI: func([]byte) error { return os.ErrPermission }})
	err := invoke(t, failing, "/kubevirt.hooks.v1alpha3.Callbacks/OnDefineDomain",
		&OnDefineDomainParams{DomainXML: dom, VMI: vmi}, &res)
	if status.Code(err) != codes.Unavailable {
		t.Errorf("OnDefineDomain with OnVMI failing: %v, want Unavailable", err)
	}
}

func TestClient(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "hook.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&Server{Domain: kubevirt.DomainOptions{Port: 4321}}).Serve(ctx, l) }()
	defer func() { cancel(); <-done }()
	c, err := NewClient(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	info, err := c.Info(cctx)
	if err != nil || info.Name != DefaultName {
		t.Fatalf("Info = %+v, %v", info, err)
	}
	out, err := c.OnDefineDomain(cctx, readFile(t, "domain-basic.xml"), readFile(t, "vmi-basic.json"))
	if err != nil || !bytes.Contains(out, []byte(`port="4321"`)) {
		t.Fatalf("OnDefineDomain = %s, %v", out, err)
	}
}
