package e2e

import "syscall"

// sysProcAttr makes the kernel kill a node if the test process dies without
// running its cleanups (a test timeout panics, for one), so that no orphaned
// node keeps its ports and data directory busy.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
