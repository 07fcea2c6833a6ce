package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/client"
	"github.com/sluice-media/sluice/internal/wire"
)

// BenchmarkUploadRSS uploads 1 GiB to a `sluice serve` child process, once
// with a signed PUT and once with tus, and reports how far the child's
// peak resident memory rose above its resident memory before the upload.
func BenchmarkUploadRSS(b *testing.B) {
	const size = 1 << 30
	for _, mode := range []string{"put", "tus"} {
		b.Run(mode, func(b *testing.B) {
			c := startChild(b, b.TempDir(), "--max-upload-size", strconv.Itoa(2<<30))
			// Measure the upload path alone, not the WebAssembly engine's
			// compilation at start-up.
			c.waitReady(b)
			b.ResetTimer()
			pid := c.cmd.Process.Pid
			cl := client.New(c.url, testToken)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			var growth float64
			for range b.N {
				before := procStatus(b, pid, "VmRSS")
				// Reset the peak (VmHWM) to the current RSS.
				if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
					b.Fatalf("reset peak RSS: %v", err)
				}
				body := &noise{left: size}
				var err error
				if mode == "put" {
					var up wire.Upload
					up, err = cl.CreateUpload(ctx, wire.UploadRequest{Name: "big.bin", Size: size})
					if err == nil {
						_, err = cl.Put(ctx, up, body, size)
					}
				} else {
					_, err = cl.TusUpload(ctx, body, size, client.TusOptions{Name: "big.bin"})
				}
				if err != nil {
					b.Fatal(err)
				}
				peak := procStatus(b, pid, "VmHWM")
				growth = float64(peak-before) / (1 << 20)
			}
			b.ReportMetric(growth, "rss-growth-MiB")
			b.SetBytes(size)
		})
	}
}

// procStatus reads a kB field of /proc/PID/status, in bytes.
func procStatus(b *testing.B, pid int, field string) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb << 10
		}
	}
	b.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// noise is a seekable stream of pseudo-random bytes (so that nothing can
// compress or deduplicate it), generated on the fly.
type noise struct {
	left, off int64
	block     []byte
}

func (n *noise) Read(p []byte) (int, error) {
	if n.left-n.off <= 0 {
		return 0, io.EOF
	}
	if n.block == nil {
		n.block = make([]byte, 1<<20+7)
		r := rand.New(rand.NewPCG(1, 2))
		for i := range n.block {
			n.block[i] = byte(r.Uint32())
		}
	}
	k := min(int64(len(p)), n.left-n.off)
	c := copy(p[:k], n.block[n.off%int64(len(n.block)):])
	n.off += int64(c)
	return c, nil
}

func (n *noise) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
		n.off = offset
	case io.SeekCurrent:
		n.off += offset
	case io.SeekEnd:
		n.off = n.left + offset
	}
	return n.off, nil
}
