package redisproc

import "syscall"

// sysProcAttr asks the kernel to kill redis-server if the process that
// started it dies without stopping it (a panic, a test -timeout, a SIGKILL).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
