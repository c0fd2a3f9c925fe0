package link

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// writev writes iov to fd with one system call, without allocating.
func writev(fd int, iov []unix.Iovec) (uintptr, unix.Errno) {
	n, _, errno := unix.Syscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
	return n, errno
}
