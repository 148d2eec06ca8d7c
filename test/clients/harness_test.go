package clients

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// recorder is a testing.TB that records Errorf calls instead of failing.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// TestHarnessSelfCheck proves, with the reference plugins and whatever the
// mode, that the harness's negative assertions can fail: CheckNothingLeft
// reports an attachment that was not deleted, and FetchBlocked sees a real
// network block (a FORWARD DROP between the two test bridges) as blocked.
func TestHarnessSelfCheck(t *testing.T) {
	t.Parallel()
	e := MustReferenceEnv(t)
	a := GetArtifacts(t, e)
	s := NewScenario(t, e)
	s.PrepareTenants("cnitool/blue.conflist", "cnitool/red.conflist")
	blue, red := s.Tenants["blue"], s.Tenants["red"]
	c := NewCNITool(s)
	nsB, nsR := Netns(t, "self-b"), Netns(t, "self-r")
	for _, ns := range []string{nsB, nsR} {
		s.Leak.AddID(CNIToolID(ns))
		s.Leak.AddNetns(ns)
	}
	c.Must(t, "add", blue.Name, nsB, "", "")
	c.Must(t, "add", red.Name, nsR, "", "")
	ipB, _ := NetnsAddr(t, nsB, "eth0")
	ipR, _ := NetnsAddr(t, nsR, "eth0")
	s.Leak.AddIP(ipB)
	s.Leak.AddIP(ipR)

	t.Run("leak-check-sees-leaks", func(t *testing.T) {
		// Besides the two attachments: a stray link and a process in the
		// simulated host, and a tenantnet state record.
		Run(t, s.InHost(Cmd{Name: "ip", Args: []string{"link", "add", "tncl-stray", "type", "bridge"}}))
		defer Try(t, s.InHost(Cmd{Name: "ip", Args: []string{"link", "del", "tncl-stray"}}))
		sleeper := exec.Command("nsenter", "--net="+s.Host.Path, "--", "sleep", "60")
		if err := sleeper.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() }()
		rec := filepath.Join(s.StateDir, "tenants", "tncl-selfcheck.json")
		if err := os.MkdirAll(filepath.Dir(rec), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(rec, []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(rec)
		r := &recorder{TB: t}
		if CheckNothingLeft(r, s.Leak) {
			t.Fatal("CheckNothingLeft saw nothing while two attachments exist")
		}
		all := strings.Join(r.errs, "\n")
		t.Logf("CheckNothingLeft reported, as it must:\n%s", all)
		for _, want := range []string{"attached to bridge " + blue.Bridge, "netns " + nsB, "IPAM allocation file", "rule in nat",
			"CNI result cache " + CNIResultsDir + "/" + blue.Name + "-", "link tncl-stray (bridge) left in the simulated host",
			fmt.Sprintf("process %d still running in the simulated host", sleeper.Process.Pid), "tenantnet state record " + rec} {
			if !strings.Contains(all, want) {
				t.Errorf("CheckNothingLeft did not report %q; it reported:\n%s", want, all)
			}
		}
	})

	t.Run("isolation-check-sees-a-block", func(t *testing.T) {
		StartNetnsWeb(t, s, a.BusyboxPath, a.Rootfs, nsR, "tncl-self-r")
		f := NetnsFetcher(a.BusyboxPath, nsB)
		ExpectFetch(t, "reference bridges route between tenants", NameURL(ipR, 80), "tncl-self-r", f)
		rule := []string{"FORWARD", "-i", blue.Bridge, "-o", red.Bridge, "-j", "DROP"}
		Run(t, s.InHost(Cmd{Name: "iptables", Args: append([]string{"-I"}, rule...)}))
		defer Try(t, s.InHost(Cmd{Name: "iptables", Args: append([]string{"-D"}, rule...)}))
		if !FetchBlocked(t, "with a FORWARD DROP", NameURL(ipR, 80), f) {
			t.Error("FetchBlocked did not see the DROP")
		}
	})

	s.StopServers()
	c.Must(t, "del", blue.Name, nsB, "", "")
	c.Must(t, "del", red.Name, nsR, "", "")
	DelNetns(t, nsB)
	DelNetns(t, nsR)
	CheckNothingLeft(t, s.Leak)
}
