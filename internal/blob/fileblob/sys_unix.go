//go:build unix

package fileblob

import (
	"io/fs"
	"syscall"
)

// inode identifies a file's data in its sidecar.
func inode(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Ino)
	}
	return 0
}

// device tells whether a rename between two files can work.
func device(fi fs.FileInfo) (uint64, bool) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev), true
	}
	return 0, false
}

// syncDirs says that a directory can be synced to make a rename in it
// durable.
const syncDirs = true
