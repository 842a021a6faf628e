package daemontest

import "syscall"

// sysProcAttr asks the kernel to kill consentd if the test binary dies
// without running its cleanups (a panic, a -timeout, a SIGKILL).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
