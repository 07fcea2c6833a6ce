package blob

import (
	"context"
	"fmt"
	"os"
)

// importByCopy streams the file at path into b and then removes it; when
// the Put fails the file stays where it was.
func importByCopy(ctx context.Context, b Bucket, key, path string, opts PutOptions) (Attrs, error) {
	f, err := os.Open(path)
	if err != nil {
		return Attrs{}, err
	}
	a, err := b.Put(ctx, key, f, opts)
	f.Close() // before Remove, which some systems refuse on an open file
	if err != nil {
		return Attrs{}, err
	}
	if err := os.Remove(path); err != nil {
		return a, fmt.Errorf("blob: import %q: stored, but %w", key, err)
	}
	return a, nil
}
