package s3blob

import "testing"

// SetCopyMax lowers the size above which a multipart write is copied into
// place part by part, for the duration of t.
func SetCopyMax(t *testing.T, n int64) {
	old := copyMax
	copyMax = n
	t.Cleanup(func() { copyMax = old })
}
