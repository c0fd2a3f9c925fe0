package sandbox

import (
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/seccomp"
)

// hotSyscalls are the calls of the packet and copy paths, tested first.
func hotSyscalls() []uintptr {
	return []uintptr{unix.SYS_FUTEX, unix.SYS_READ, unix.SYS_WRITE, unix.SYS_READV, unix.SYS_WRITEV,
		unix.SYS_EPOLL_PWAIT, unix.SYS_NANOSLEEP, unix.SYS_SENDTO, unix.SYS_RECVFROM}
}

// threadCloneFlags are the flags of the Go runtime's clone of a new
// thread (runtime.cloneFlags, and CLONE_SETTLS its amd64 assembly adds);
// clone with any other flags would make a process, which masq never does.
const threadCloneFlags = unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND |
	unix.CLONE_SYSVSEM | unix.CLONE_THREAD | unix.CLONE_SETTLS

// allowlist is every system call masq makes once it is set up: the Go
// runtime's, the network poller's, the guest link's and the pod sockets'.
// What setup alone does (open the tap, join a namespace, bind listeners,
// read configuration) is not in it. pid is masq's process ID: signals go
// to its own threads only. keepNetRaw admits raw sockets (CAP_NET_RAW
// kept, for --attach's or a raw ICMP socket's reopening).
func allowlist(pid int, keepNetRaw bool) seccomp.SyscallRules {
	r := seccomp.MakeSyscallRules(map[uintptr]seccomp.SyscallRule{
		// The Go runtime: memory, threads, signals, time.
		unix.SYS_MMAP:     seccomp.PerArg{seccomp.AnyValue{}, seccomp.AnyValue{}, noExec()},
		unix.SYS_MPROTECT: seccomp.PerArg{seccomp.AnyValue{}, seccomp.AnyValue{}, noExec()},
		unix.SYS_MUNMAP:   seccomp.MatchAll{},
		unix.SYS_MADVISE:  seccomp.MatchAll{},
		unix.SYS_MINCORE:  seccomp.MatchAll{},
		unix.SYS_CLONE: seccomp.Or{ // with and without CLONE_SETTLS, as architectures differ
			seccomp.PerArg{seccomp.EqualTo(threadCloneFlags)},
			seccomp.PerArg{seccomp.EqualTo(threadCloneFlags &^ unix.CLONE_SETTLS)},
		},
		unix.SYS_EXIT:              seccomp.MatchAll{},
		unix.SYS_EXIT_GROUP:        seccomp.MatchAll{},
		unix.SYS_FUTEX:             seccomp.MatchAll{},
		unix.SYS_NANOSLEEP:         seccomp.MatchAll{},
		unix.SYS_CLOCK_NANOSLEEP:   seccomp.MatchAll{},
		unix.SYS_CLOCK_GETTIME:     seccomp.MatchAll{},
		unix.SYS_GETTIMEOFDAY:      seccomp.MatchAll{},
		unix.SYS_SCHED_YIELD:       seccomp.MatchAll{},
		unix.SYS_SCHED_GETAFFINITY: seccomp.MatchAll{},
		unix.SYS_RESTART_SYSCALL:   seccomp.MatchAll{},
		unix.SYS_RT_SIGACTION:      seccomp.MatchAll{},
		unix.SYS_RT_SIGPROCMASK:    seccomp.MatchAll{},
		unix.SYS_RT_SIGRETURN:      seccomp.MatchAll{},
		unix.SYS_SIGALTSTACK:       seccomp.MatchAll{},
		unix.SYS_GETPID:            seccomp.MatchAll{},
		unix.SYS_GETTID:            seccomp.MatchAll{},
		unix.SYS_TGKILL:            seccomp.PerArg{seccomp.EqualTo(pid)},
		unix.SYS_KILL:              seccomp.PerArg{seccomp.EqualTo(pid)},
		unix.SYS_GETRANDOM:         seccomp.MatchAll{},
		unix.SYS_GETRLIMIT:         seccomp.MatchAll{},
		unix.SYS_PRLIMIT64:         seccomp.PerArg{seccomp.EqualTo(0), seccomp.AnyValue{}, seccomp.EqualTo(0)}, // read own
		unix.SYS_PRCTL:             seccomp.PerArg{seccomp.EqualTo(unix.PR_SET_VMA)},                           // the runtime names its mappings
		// --cpu-profile's timers.
		unix.SYS_SETITIMER:     seccomp.MatchAll{},
		unix.SYS_TIMER_CREATE:  seccomp.MatchAll{},
		unix.SYS_TIMER_SETTIME: seccomp.MatchAll{},
		unix.SYS_TIMER_DELETE:  seccomp.MatchAll{},

		// File descriptors and the network poller.
		unix.SYS_READ:          seccomp.MatchAll{},
		unix.SYS_WRITE:         seccomp.MatchAll{},
		unix.SYS_READV:         seccomp.MatchAll{},
		unix.SYS_WRITEV:        seccomp.MatchAll{},
		unix.SYS_PREAD64:       seccomp.MatchAll{},
		unix.SYS_CLOSE:         seccomp.MatchAll{},
		unix.SYS_FCNTL:         seccomp.MatchAll{},
		unix.SYS_DUP:           seccomp.MatchAll{},
		unix.SYS_DUP3:          seccomp.MatchAll{},
		unix.SYS_PIPE2:         seccomp.MatchAll{},
		unix.SYS_EVENTFD2:      seccomp.MatchAll{},
		unix.SYS_EPOLL_CREATE1: seccomp.MatchAll{},
		unix.SYS_EPOLL_CTL:     seccomp.MatchAll{},
		unix.SYS_EPOLL_PWAIT:   seccomp.MatchAll{},
		unix.SYS_EPOLL_PWAIT2:  seccomp.MatchAll{},
		unix.SYS_EPOLL_WAIT:    seccomp.MatchAll{},
		unix.SYS_PPOLL:         seccomp.MatchAll{},
		unix.SYS_POLL:          seccomp.MatchAll{},
		unix.SYS_IOCTL: seccomp.Or{ // socket queue sizes only; the tap's ioctls are setup's
			seccomp.PerArg{seccomp.AnyValue{}, seccomp.EqualTo(unix.SIOCINQ)},
			seccomp.PerArg{seccomp.AnyValue{}, seccomp.EqualTo(unix.SIOCOUTQ)},
		},
		// Reading files: /proc (the process's own fds and status, sysctls).
		// Without capabilities, only what the user may read anyway. A file
		// may be created, never an existing one opened for writing: a live
		// capture's temporary file (POST /pcap on the control socket).
		unix.SYS_OPENAT: seccomp.Or{
			seccomp.PerArg{seccomp.AnyValue{}, seccomp.AnyValue{}, readOnly()},
			seccomp.PerArg{seccomp.AnyValue{}, seccomp.AnyValue{}, newFile()},
		},
		unix.SYS_FSTAT:      seccomp.MatchAll{},
		unix.SYS_NEWFSTATAT: seccomp.MatchAll{},
		unix.SYS_STATX:      seccomp.MatchAll{},
		unix.SYS_STATFS:     seccomp.MatchAll{}, // /proc's, by the metrics' process collector
		unix.SYS_FSTATFS:    seccomp.MatchAll{},
		unix.SYS_LSEEK:      seccomp.MatchAll{},
		unix.SYS_GETDENTS64: seccomp.MatchAll{},
		unix.SYS_READLINKAT: seccomp.MatchAll{},
		unix.SYS_UNAME:      seccomp.MatchAll{},
		// A --socket's unix socket file, removed when masq stops.
		unix.SYS_UNLINKAT: seccomp.MatchAll{},

		// Sockets: the pod's (TCP and UDP flows, ping sockets, forwarded
		// ports' connections) and a --socket guest's reconnections.
		unix.SYS_SOCKET:      socketDomains(keepNetRaw),
		unix.SYS_CONNECT:     seccomp.MatchAll{},
		unix.SYS_BIND:        seccomp.MatchAll{},
		unix.SYS_LISTEN:      seccomp.MatchAll{},
		unix.SYS_ACCEPT4:     seccomp.MatchAll{},
		unix.SYS_GETSOCKNAME: seccomp.MatchAll{},
		unix.SYS_GETPEERNAME: seccomp.MatchAll{},
		unix.SYS_SETSOCKOPT:  seccomp.MatchAll{},
		unix.SYS_GETSOCKOPT:  seccomp.MatchAll{},
		unix.SYS_SHUTDOWN:    seccomp.MatchAll{},
		unix.SYS_SENDFILE:    seccomp.MatchAll{}, // a live capture's file to the control socket
		unix.SYS_SPLICE:      seccomp.MatchAll{},
		unix.SYS_RECVFROM:    seccomp.MatchAll{},
		unix.SYS_SENDTO:      seccomp.MatchAll{},
		unix.SYS_RECVMSG:     seccomp.MatchAll{},
		unix.SYS_SENDMSG:     seccomp.MatchAll{},
		unix.SYS_RECVMMSG:    seccomp.MatchAll{},
		unix.SYS_SENDMMSG:    seccomp.MatchAll{},
	})
	return r
}

// noExec matches the protection argument of mmap and mprotect without
// PROT_EXEC: the Go runtime never maps code after start, and shellcode
// needs to.
func noExec() seccomp.ValueMatcher { return seccomp.MaskedEqual(unix.PROT_EXEC, 0) }

// readOnly matches openat's flags opening for reading only: masq writes
// no file after setup.
func readOnly() seccomp.ValueMatcher {
	return seccomp.MaskedEqual(unix.O_ACCMODE|unix.O_CREAT|unix.O_TRUNC, unix.O_RDONLY)
}

// newFile matches openat's flags creating a new file exclusively
// (os.CreateTemp's): no existing file can be opened for writing.
func newFile() seccomp.ValueMatcher {
	return seccomp.MaskedEqual(unix.O_ACCMODE|unix.O_CREAT|unix.O_TRUNC|unix.O_EXCL, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL)
}

// socketDomains allows sockets of IPv4, IPv6 and unix domains and route
// netlink; packet sockets only when CAP_NET_RAW is kept (without it the
// kernel refuses them anyway).
func socketDomains(keepNetRaw bool) seccomp.SyscallRule {
	rules := seccomp.Or{
		seccomp.PerArg{seccomp.EqualTo(unix.AF_INET), seccomp.AnyValue{}},
		seccomp.PerArg{seccomp.EqualTo(unix.AF_INET6), seccomp.AnyValue{}},
		seccomp.PerArg{seccomp.EqualTo(unix.AF_UNIX), seccomp.AnyValue{}},
		// Reading the pod's addresses (net.InterfaceAddrs: is an ICMP
		// error's source the pod itself?); changing them needs
		// CAP_NET_ADMIN, which is gone.
		seccomp.PerArg{seccomp.EqualTo(unix.AF_NETLINK), seccomp.AnyValue{}, seccomp.EqualTo(unix.NETLINK_ROUTE)},
	}
	if keepNetRaw {
		rules = append(rules, seccomp.PerArg{seccomp.EqualTo(unix.AF_PACKET), seccomp.AnyValue{}})
	}
	return rules
}
