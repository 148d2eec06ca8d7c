// Package lateclose closes a file descriptor without waiting for what the
// kernel does when the file is released, where that is a wait for other
// work: an RCU grace period for a packet socket (packet_release calls
// synchronize_net), nf_tables' pending destroy work for a netfilter netlink
// socket (nft_rcv_nl_event flushes it, whoever queued it, on any socket's
// release). ADD and DEL are short processes: such a wait, 3 to 16 ms on
// this 2-core host and more under load, is often longer than their work.
//
// An io_uring instance takes a reference to the file (a registered file)
// and is closed at once; the kernel tears rings down in a worker, so the
// file's release, and its wait, happen there. No process waits, the
// caller's exit included. Where io_uring is not available (an old kernel,
// io_uring_disabled, a seccomp filter), the file is closed here and the
// wait is paid.
package lateclose

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Release closes fd; its file is released later, by the kernel.
func Release(fd int) {
	var params [120]byte // struct io_uring_params, all zero
	r, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&params[0])), 0)
	if errno != 0 {
		unix.Close(fd)
		return
	}
	ring := int(r)
	files := []int32{int32(fd)}
	const registerFiles = 2 // IORING_REGISTER_FILES
	// Registered, the ring holds the file and this close is not the last;
	// not registered, it is, and waits.
	unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(ring), registerFiles, uintptr(unsafe.Pointer(&files[0])), 1, 0, 0)
	unix.Close(fd)
	unix.Close(ring)
}
