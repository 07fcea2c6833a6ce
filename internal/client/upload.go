package client

import (
	"context"
	"io"
	"maps"
	"mime"
	"os"
	"path/filepath"

	"github.com/sluice-media/sluice/internal/wire"
)

// UploadOptions tune UploadFile.
type UploadOptions struct {
	// TusThreshold: files at least this large go over tus. Default 32 MiB.
	TusThreshold int64
	// Progress, if set, is called with bytes sent so far and the total.
	Progress func(done, total int64)
	// Metadata are key-value pairs kept with the asset.
	Metadata map[string]string
	// Visibility is "public", "private" or "" (the pipeline decides).
	Visibility string
}

// UploadFile uploads the file at path and returns its asset id: a signed
// PUT for small files, a resumable tus upload for large ones.
func (c *Client) UploadFile(ctx context.Context, path string, o UploadOptions) (string, error) {
	if o.TusThreshold <= 0 {
		o.TusThreshold = 32 << 20
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	size := fi.Size()
	name := filepath.Base(path)
	ctype := mime.TypeByExtension(filepath.Ext(path))
	progress := func(done int64) {
		if o.Progress != nil {
			o.Progress(done, size)
		}
	}
	if size >= o.TusThreshold {
		md := o.Metadata
		if o.Visibility != "" {
			md = maps.Clone(md)
			if md == nil {
				md = map[string]string{}
			}
			md["visibility"] = o.Visibility
		}
		return c.TusUpload(ctx, f, size, TusOptions{Name: name, ContentType: ctype, Metadata: md, Progress: progress})
	}
	up, err := c.CreateUpload(ctx, wire.UploadRequest{Name: name, ContentType: ctype, Size: size, Metadata: o.Metadata, Visibility: o.Visibility})
	if err != nil {
		return "", err
	}
	if _, err := c.Put(ctx, up, &progressReader{r: f, fn: progress}, size); err != nil {
		return up.AssetID, err
	}
	return up.AssetID, nil
}

type progressReader struct {
	r  io.Reader
	n  int64
	fn func(int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	p.fn(p.n)
	return n, err
}
