package blob

import (
	"context"
	"os"
)

func importByCopy(ctx context.Context, b Bucket, key, path string, opts PutOptions) (Attrs, error) {
	f, err := os.Open(path)
	if err != nil {
		return Attrs{}, err
	}
	defer f.Close()
	a, err := b.Put(ctx, key, f, opts)
	if err != nil {
		return Attrs{}, err
	}
	f.Close()
	return a, os.Remove(path)
}
