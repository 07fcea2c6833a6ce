package blob_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/sluice-media/sluice/internal/blob"
	"github.com/sluice-media/sluice/internal/blob/blobtest"
	"github.com/sluice-media/sluice/internal/blob/fileblob"
)

// plain hides a bucket's optional interfaces, as a remote driver lacks
// them, so that blob.Import has to copy.
type plain struct{ blob.Bucket }

func openFile(t *testing.T) *fileblob.Bucket {
	t.Helper()
	b, err := fileblob.Open(t.TempDir(), "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// TestConformanceWithoutImporter runs the suite, whose Import subtest
// goes through blob.Import, on a bucket that is no Importer.
func TestConformanceWithoutImporter(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Bucket {
		var b blob.Bucket = plain{openFile(t)}
		if _, ok := b.(blob.Importer); ok {
			t.Fatal("plain is an Importer")
		}
		return b
	})
}

// TestImportChoosesPath checks that blob.Import moves the file itself
// through an Importer and copies it otherwise.
func TestImportChoosesPath(t *testing.T) {
	for _, tt := range []struct {
		name    string
		wrap    func(*fileblob.Bucket) blob.Bucket
		renamed bool
	}{
		{"importer", func(b *fileblob.Bucket) blob.Bucket { return b }, true},
		{"copy", func(b *fileblob.Bucket) blob.Bucket { return plain{b} }, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fb := openFile(t)
			src := filepath.Join(t.TempDir(), "upload")
			data := []byte("some video")
			if err := os.WriteFile(src, data, 0o600); err != nil {
				t.Fatal(err)
			}
			before, err := os.Lstat(src)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := blob.Import(t.Context(), tt.wrap(fb), "k", src, blob.PutOptions{Size: int64(len(data))}); err != nil {
				t.Fatalf("Import = %v", err)
			}
			if _, err := os.Lstat(src); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("Lstat(source) after Import = %v, want %v", err, os.ErrNotExist)
			}
			p, err := fb.LocalPath("k")
			if err != nil {
				t.Fatal(err)
			}
			after, err := os.Lstat(p)
			if err != nil {
				t.Fatal(err)
			}
			if got := os.SameFile(before, after); got != tt.renamed {
				t.Errorf("object is the source file itself = %t, want %t", got, tt.renamed)
			}
			o, err := fb.Open(t.Context(), "k")
			if err != nil {
				t.Fatal(err)
			}
			defer o.Close()
			if got, err := io.ReadAll(o); err != nil || !bytes.Equal(got, data) {
				t.Errorf("content = %q, %v, want %q", got, err, data)
			}
		})
	}
}
