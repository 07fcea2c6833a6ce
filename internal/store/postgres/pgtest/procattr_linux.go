package pgtest

import "syscall"

// procAttr runs a server program as cred (nil: as the current user). The
// server gets SIGINT, a fast shutdown, should the test binary die before
// Main stops it.
func procAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGINT}
}
