package lateclose

import (
	"errors"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tenantnet/tenantnet/test/harness"
)

// Release closes the descriptor at once and the file is still released by
// the kernel: a listening socket handed to it frees its port.
func TestReleaseClosesAndFrees(t *testing.T) {
	n := harness.NewNS(t, "lc")
	n.Do(t, func() error {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		addr := l.Addr().String()
		f, err := l.(*net.TCPListener).File()
		if err != nil {
			return err
		}
		fd, err := unix.Dup(int(f.Fd())) // the only descriptor left
		f.Close()
		l.Close()
		if err != nil {
			return err
		}
		Release(fd)
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
			t.Errorf("descriptor %d still open after Release (%v)", fd, err)
		}
		// The socket is still bound until the kernel releases it; then the
		// port is free again.
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			l2, err := net.Listen("tcp4", addr)
			if err == nil {
				l2.Close()
				return nil
			}
			if time.Now().After(deadline) {
				t.Fatalf("port %s not freed after Release: %v", addr, err)
			}
		}
	})
}
