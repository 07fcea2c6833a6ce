//go:build unix && !linux

package pgtest

import "syscall"

// procAttr runs a server program as cred (nil: as the current user).
// Without Linux's parent-death signal, a server whose test binary died
// before Main stopped it keeps running until stopped by hand.
func procAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred}
}
