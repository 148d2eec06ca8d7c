package clients

import (
	"fmt"
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	code := func() int {
		unlock, err := LockHost()
		if err != nil {
			fmt.Fprintln(os.Stderr, "clients: host lock:", err)
			return 1
		}
		defer unlock()
		dir, err := os.MkdirTemp("", Prefix+"-artifacts-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		SetArtifactsDir(dir)
		return m.Run()
	}()
	os.Exit(code)
}
