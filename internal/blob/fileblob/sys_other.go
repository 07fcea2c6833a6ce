//go:build !unix

package fileblob

import "io/fs"

// Elsewhere a sidecar is matched by size and modification time alone,
// Import tries a rename and falls back to a copy when it fails, and
// directories are not synced, which Windows, for one, refuses.

func inode(fs.FileInfo) uint64 { return 0 }

func device(fs.FileInfo) (uint64, bool) { return 0, false }

const syncDirs = false
