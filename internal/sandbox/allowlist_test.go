package sandbox

import (
	"testing"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/abi/linux"
	"gvisor.dev/gvisor/pkg/bpf"
	"gvisor.dev/gvisor/pkg/seccomp"
)

// verdict runs the filter on one system call and returns its action.
func verdict(t *testing.T, prog bpf.Program, nr uintptr, args ...uint64) linux.BPFAction {
	t.Helper()
	d := linux.SeccompData{Nr: int32(nr), Arch: seccomp.LINUX_AUDIT_ARCH}
	copy(d.Args[:], args)
	buf := make([]byte, d.SizeBytes())
	got, err := bpf.Exec[bpf.NativeEndian](prog, seccomp.DataAsBPFInput(&d, buf))
	if err != nil {
		t.Fatalf("run filter on syscall %d: %v", nr, err)
	}
	return linux.BPFAction(got)
}

// TestAllowlist runs the built filter on calls masq makes and on calls an
// attacker in the process would want.
func TestAllowlist(t *testing.T) {
	const pid = 4242
	allow := linux.SECCOMP_RET_ALLOW
	eperm := linux.SECCOMP_RET_ERRNO.WithReturnCode(uint16(unix.EPERM))
	tests := []struct {
		name    string
		netRaw  bool
		nr      uintptr
		args    []uint64
		want    linux.BPFAction
		wantRaw linux.BPFAction // with CAP_NET_RAW kept; 0: as want
	}{
		{name: "read", nr: unix.SYS_READ, want: allow},
		{name: "futex", nr: unix.SYS_FUTEX, want: allow},
		{name: "thread clone", nr: unix.SYS_CLONE, args: []uint64{threadCloneFlags}, want: allow},
		{name: "fork", nr: unix.SYS_CLONE, args: []uint64{uint64(unix.SIGCHLD)}, want: eperm},
		{name: "clone3", nr: unix.SYS_CLONE3, want: eperm},
		{name: "execve", nr: unix.SYS_EXECVE, want: eperm},
		{name: "ptrace", nr: unix.SYS_PTRACE, want: eperm},
		{name: "setns", nr: unix.SYS_SETNS, want: eperm},
		{name: "mount", nr: unix.SYS_MOUNT, want: eperm},
		{name: "mmap rw", nr: unix.SYS_MMAP, args: []uint64{0, 4096, unix.PROT_READ | unix.PROT_WRITE}, want: allow},
		{name: "mmap exec", nr: unix.SYS_MMAP, args: []uint64{0, 4096, unix.PROT_READ | unix.PROT_EXEC}, want: eperm},
		{name: "mprotect exec", nr: unix.SYS_MPROTECT, args: []uint64{0, 4096, unix.PROT_EXEC}, want: eperm},
		{name: "open for reading", nr: unix.SYS_OPENAT, args: []uint64{0, 0, unix.O_RDONLY | unix.O_CLOEXEC}, want: allow},
		{name: "open for writing", nr: unix.SYS_OPENAT, args: []uint64{0, 0, unix.O_WRONLY}, want: eperm},
		{name: "create a file, not exclusively", nr: unix.SYS_OPENAT, args: []uint64{0, 0, unix.O_RDWR | unix.O_CREAT}, want: eperm},
		{name: "create a new file", nr: unix.SYS_OPENAT, args: []uint64{0, 0, unix.O_RDWR | unix.O_CREAT | unix.O_EXCL | unix.O_CLOEXEC}, want: allow},
		{name: "truncate a file", nr: unix.SYS_OPENAT, args: []uint64{0, 0, unix.O_WRONLY | unix.O_CREAT | unix.O_TRUNC}, want: eperm},
		{name: "signal own thread", nr: unix.SYS_TGKILL, args: []uint64{pid, 1, 23}, want: allow},
		{name: "signal another process", nr: unix.SYS_KILL, args: []uint64{1, 9}, want: eperm},
		{name: "udp socket", nr: unix.SYS_SOCKET, args: []uint64{unix.AF_INET6, unix.SOCK_DGRAM}, want: allow},
		{name: "route netlink socket", nr: unix.SYS_SOCKET, args: []uint64{unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE}, want: allow},
		{name: "audit netlink socket", nr: unix.SYS_SOCKET, args: []uint64{unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_AUDIT}, want: eperm},
		{name: "packet socket", nr: unix.SYS_SOCKET, args: []uint64{unix.AF_PACKET, unix.SOCK_RAW}, want: eperm, wantRaw: allow},
		{name: "tap ioctl", nr: unix.SYS_IOCTL, args: []uint64{3, unix.TUNSETIFF}, want: eperm},
		{name: "prctl other than naming memory", nr: unix.SYS_PRCTL, args: []uint64{unix.PR_SET_DUMPABLE, 1}, want: eperm},
	}
	for _, raw := range []bool{false, true} {
		instrs, err := filter(pid, raw, DenyEPERM)
		if err != nil {
			t.Fatal(err)
		}
		prog, err := bpf.Compile(instrs, true)
		if err != nil {
			t.Fatalf("compile: %v", err)
		}
		for _, tt := range tests {
			want := tt.want
			if raw && tt.wantRaw != 0 {
				want = tt.wantRaw
			}
			if got := verdict(t, prog, tt.nr, tt.args...); got != want {
				t.Errorf("keepNetRaw=%v, %s: action %v, want %v", raw, tt.name, got, want)
			}
		}
	}
}

// TestDenyCrashTraps checks the tests' action: a trap, not an error.
func TestDenyCrashTraps(t *testing.T) {
	instrs, err := filter(1, false, DenyCrash)
	if err != nil {
		t.Fatal(err)
	}
	prog, err := bpf.Compile(instrs, true)
	if err != nil {
		t.Fatal(err)
	}
	if got := verdict(t, prog, unix.SYS_EXECVE); got != linux.SECCOMP_RET_TRAP {
		t.Errorf("execve under DenyCrash: %v, want trap", got)
	}
	if got := verdict(t, prog, unix.SYS_READ); got != linux.SECCOMP_RET_ALLOW {
		t.Errorf("read under DenyCrash: %v, want allow", got)
	}
}
