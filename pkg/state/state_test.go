package state

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/tenantnet/tenantnet/pkg/tenant"
)

func TestTenantAndAttachmentRecords(t *testing.T) {
	d := Dir{Root: t.TempDir()}
	if rec, err := d.ReadTenant("br1"); rec != nil || err != nil {
		t.Fatalf("missing record: %v %v", rec, err)
	}
	rec := &Tenant{Network: "blue", Spec: tenant.Spec{Bridge: "br1", Subnets: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}}}
	l, err := d.LockHost()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.WriteTenant(rec); err != nil {
		t.Fatal(err)
	}
	l.Unlock()
	got, err := d.ReadTenant("br1")
	if err != nil || got.Network != "blue" || !got.Spec.Equal(rec.Spec) {
		t.Fatalf("%+v %v", got, err)
	}
	if has, _ := d.HasAttachments("br1"); has {
		t.Fatal("attachments before any")
	}
	for _, id := range []string{"a", "b"} {
		if err := d.WriteAttachment("br1", &Attachment{Network: "blue", ContainerID: id, IfName: "eth0"}); err != nil {
			t.Fatal(err)
		}
	}
	// A temporary file from a crashed writer does not count as an attachment.
	os.WriteFile(filepath.Join(d.attachDir("br1"), "x@eth0.json.123.tmp"), nil, 0o600)
	if has, _ := d.HasAttachments("br1"); !has {
		t.Fatal("no attachments seen")
	}
	_ = d.RemoveAttachment("br1", "a", "eth0")
	_ = d.RemoveAttachment("br1", "a", "eth0") // twice is fine
	if as, _ := d.Attachments("br1"); len(as) != 1 || as[0].ContainerID != "b" {
		t.Fatalf("attachments %+v", as)
	}
	_ = d.RemoveAttachment("br1", "b", "eth0")
	if has, _ := d.HasAttachments("br1"); has {
		t.Fatal("attachments after the last removal")
	}
	if ts, _ := d.Tenants(); len(ts) != 1 {
		t.Fatalf("tenants %v", ts)
	}
}

// A record that cannot be parsed does not hide the others: Tenants returns
// them, and names the bad one in an *Unreadable error.
func TestUnreadableRecordDoesNotHideTheOthers(t *testing.T) {
	d := Dir{Root: t.TempDir()}
	l, err := d.LockHost()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	if err := d.WriteTenant(&Tenant{Network: "blue", Spec: tenant.Spec{Bridge: "br1"}}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d.tenantPath("br2"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	all, err := d.Tenants()
	var bad *Unreadable
	if !errors.As(err, &bad) || len(bad.Bridges) != 1 || bad.Bridges[0] != "br2" || !errors.Is(bad.Errs[0], ErrCorrupt) {
		t.Fatalf("error %v, want br2 unreadable", err)
	}
	if len(all) != 1 || all[0].Network != "blue" {
		t.Fatalf("records %v, want blue's", all)
	}
	if _, err := d.SetAside("br2"); err != nil {
		t.Fatal(err)
	}
	if all, err := d.Tenants(); err != nil || len(all) != 1 {
		t.Fatalf("after setting it aside: %v %v", all, err)
	}
}
