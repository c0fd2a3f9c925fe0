// Package sandbox owns masq's confinement: once the guest's link is open,
// the namespaces entered and every listener bound, Apply drops every
// capability (keeping CAP_NET_RAW only when asked), sets no_new_privs and
// installs a seccomp allowlist of the system calls masq makes afterwards.
//
// Each of these is per-thread state in Linux. Apply changes it on every
// thread of the process at once (syscall.AllThreadsSyscall for the
// capabilities and no_new_privs, SECCOMP_FILTER_FLAG_TSYNC for the filter),
// and threads the Go runtime starts later are cloned from confined ones;
// it then reads every thread's /proc status back to prove it. Go can only
// do that in a binary without cgo (AllThreadsSyscall refuses otherwise), so
// masq is built with CGO_ENABLED=0.
//
// Confinement is for the whole process and cannot be undone: only a
// command's main path calls Apply, never a library or a test process that
// goes on running other tests.
package sandbox
