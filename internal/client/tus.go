package client

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// TusOptions tune a resumable upload.
type TusOptions struct {
	Name        string
	ContentType string
	// Metadata are the asset's key-value pairs.
	Metadata map[string]string
	// ChunkSize is the size of each PATCH. Default 16 MiB.
	ChunkSize int64
	// Retries is how many failed requests in a row are tolerated. Default 5.
	Retries int
	// Progress, if set, is called with the bytes confirmed by the server.
	Progress func(done int64)
}

// TusUpload uploads size bytes from r (seekable, so that a failed chunk
// can be sent again) with the tus protocol and returns the asset id.
func (c *Client) TusUpload(ctx context.Context, r io.ReadSeeker, size int64, o TusOptions) (string, error) {
	if o.ChunkSize <= 0 {
		o.ChunkSize = 16 << 20
	}
	if o.Retries <= 0 {
		o.Retries = 5
	}
	loc, assetID, err := c.tusCreate(ctx, size, o)
	if err != nil {
		return "", err
	}
	var offset int64
	failures := 0
	for offset < size {
		next, err := c.tusPatch(ctx, loc, r, offset, min(o.ChunkSize, size-offset))
		if err == nil {
			offset, failures = next, 0
			if o.Progress != nil {
				o.Progress(offset)
			}
			continue
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		if failures++; failures > o.Retries {
			return "", fmt.Errorf("%w: %v", ErrTooManyRetries, err)
		}
		select {
		case <-time.After(time.Duration(failures) * 500 * time.Millisecond):
		case <-ctx.Done():
			return "", ctx.Err()
		}
		// Ask the server how much it kept, and go on from there.
		if got, herr := c.tusOffset(ctx, loc); herr == nil {
			offset = got
		}
	}
	if size == 0 && o.Progress != nil {
		o.Progress(0)
	}
	return assetID, nil
}

func (c *Client) tusCreate(ctx context.Context, size int64, o TusOptions) (loc, assetID string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.Base+"/v1/tus/", nil)
	if err != nil {
		return "", "", err
	}
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Upload-Length", strconv.FormatInt(size, 10))
	meta := []string{"filename " + base64.StdEncoding.EncodeToString([]byte(o.Name))}
	if o.ContentType != "" {
		meta = append(meta, "filetype "+base64.StdEncoding.EncodeToString([]byte(o.ContentType)))
	}
	keys := slices.Sorted(maps.Keys(o.Metadata))
	for _, k := range keys {
		meta = append(meta, k+" "+base64.StdEncoding.EncodeToString([]byte(o.Metadata[k])))
	}
	req.Header.Set("Upload-Metadata", strings.Join(meta, ","))
	resp, err := c.send(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return "", "", decodeError(resp)
	}
	u, err := url.Parse(c.Base + "/v1/tus/")
	if err != nil {
		return "", "", err
	}
	ref, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		return "", "", fmt.Errorf("client: bad tus Location: %w", err)
	}
	return u.ResolveReference(ref).String(), resp.Header.Get("Sluice-Asset-Id"), nil
}

func (c *Client) tusPatch(ctx context.Context, loc string, r io.ReadSeeker, offset, n int64) (int64, error) {
	if _, err := r.Seek(offset, io.SeekStart); err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, loc, io.LimitReader(r, n))
	if err != nil {
		return 0, err
	}
	req.ContentLength = n
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	req.Header.Set("Upload-Offset", strconv.FormatInt(offset, 10))
	resp, err := c.send(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return 0, decodeError(resp)
	}
	return strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
}

func (c *Client) tusOffset(ctx context.Context, loc string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, loc, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Tus-Resumable", "1.0.0")
	resp, err := c.send(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("client: tus HEAD: %s", resp.Status)
	}
	return strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
}
