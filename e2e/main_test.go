package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// buildTimeout bounds the one `go build` of the masq binary; a cold build of
// gVisor on two cores takes a few minutes.
const buildTimeout = 5 * time.Minute

var (
	// masqBin is the path of the masq binary under test, set by TestMain.
	masqBin string
	// buildErr is why masqBin could not be had; tests report it.
	buildErr error
	// peerBin is the path of the netpeer helper (./e2e/internal/netpeer),
	// and peerErr why it could not be built.
	peerBin string
	peerErr error
)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	// Every masq the tests start confines itself (run does) and dies, with
	// the stack of the call, on a system call outside its seccomp
	// allowlist instead of failing it with EPERM: the whole suite proves
	// the allowlist.
	os.Setenv("MASQ_SECCOMP_DENY", "crash")
	if os.Geteuid() == 0 { // Without root every test skips: build nothing.
		dir, err := os.MkdirTemp("", "masq-e2e-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		masqBin, buildErr = buildMasq(dir)
		peerBin, peerErr = buildPeer(dir)
	}
	return m.Run()
}

// buildMasq returns $MASQ_BIN, or builds ./cmd/masq of this module into dir.
func buildMasq(dir string) (string, error) {
	if bin := os.Getenv("MASQ_BIN"); bin != "" {
		return filepath.Abs(bin)
	}
	return goBuild(dir, "masq", "./cmd/masq")
}

// buildPeer builds the netpeer helper into dir.
func buildPeer(dir string) (string, error) {
	return goBuild(dir, "netpeer", "./e2e/internal/netpeer")
}

// goBuild builds the package pkg of this module into dir/name.
func goBuild(dir, name, pkg string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	bin := filepath.Join(dir, name)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0") // as make build: masq confines itself only without cgo
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
	}
	return bin, nil
}

// requireRoot skips t unless it runs as root.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("e2e tests need root (network namespaces, tap devices)")
	}
}

// masqBinary returns the masq binary under test; t skips without root and
// fails when the binary could not be built.
func masqBinary(t *testing.T) string {
	t.Helper()
	requireRoot(t)
	if buildErr != nil {
		t.Fatalf("no masq binary: %v", buildErr)
	}
	return masqBin
}

// peerBinary returns the netpeer helper; t skips without root and fails
// when it could not be built.
func peerBinary(t *testing.T) string {
	t.Helper()
	requireRoot(t)
	if peerErr != nil {
		t.Fatalf("no netpeer binary: %v", peerErr)
	}
	return peerBin
}

// requireTool fails t when the program name is not installed; pkg is the
// Debian package that provides it.
func requireTool(t *testing.T, name, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s not found: install the Debian package %s (%v)", name, pkg, err)
	}
}
