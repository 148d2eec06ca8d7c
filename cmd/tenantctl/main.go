// Command tenantctl is the operator's tool for a host's tenantnet tenants:
// list, show, ips, check, gc, doctor (tenantctl help).
package main

import (
	"os"

	"github.com/tenantnet/tenantnet/pkg/ctl"
)

func main() { os.Exit(ctl.Run()) }
