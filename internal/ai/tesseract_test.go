package ai

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/mediatest"
)

const dejaVuSans = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"

// requireTesseract fails the test when tesseract or its English data is
// missing: these tests run the real tool.
func requireTesseract(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("tesseract")
	if err != nil {
		t.Fatal("tesseract not found on PATH: these tests run the real tool; install it with `bash scripts/ai-deps.sh` (apt-get install -y tesseract-ocr tesseract-ocr-eng)")
	}
	return path
}

// textFrame draws text in black on white with ffmpeg's drawtext and
// returns the encoded image (ext ".png" or ".jpg").
func textFrame(t testing.TB, text, ext string) []byte {
	t.Helper()
	if _, err := os.Stat(dejaVuSans); err != nil {
		t.Fatalf("%s missing: install fonts-dejavu-core (scripts/deps.sh does)", dejaVuSans)
	}
	out := filepath.Join(t.TempDir(), "text"+ext)
	mediatest.Run(t, "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
		"-f", "lavfi", "-i", "color=white:s=640x160",
		"-vf", fmt.Sprintf("drawtext=fontfile=%s:text='%s':fontsize=64:fontcolor=black:x=20:y=40", dejaVuSans, text),
		"-frames:v", "1", out)
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func newTestTesseract(t testing.TB, pc ProviderConfig) *Tesseract {
	t.Helper()
	tp, err := NewTesseract(pc)
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

func TestTesseractReadsDrawnText(t *testing.T) {
	requireTesseract(t)
	tp := newTestTesseract(t, ProviderConfig{})
	ctx := context.Background()
	if err := tp.Available(ctx); err != nil {
		t.Fatalf("Available: %v", err)
	}
	if got := tp.Model(TaskOCR); !strings.HasPrefix(got, "tesseract-") || len(got) == len("tesseract-") {
		t.Errorf("Model(ocr) = %q, want tesseract-VERSION", got)
	}
	if got := tp.Model(TaskTag); got != "" {
		t.Errorf("Model(tag) = %q, want \"\"", got)
	}
	for _, tc := range []struct{ ext, ctype string }{{".png", "image/png"}, {".jpg", "image/jpeg"}} {
		t.Run(tc.ext, func(t *testing.T) {
			img := textFrame(t, "SLUICE 2026", tc.ext)
			start := time.Now()
			res, usage, err := tp.OCR(ctx, OCRRequest{Image: Image{Data: img, ContentType: tc.ctype}})
			elapsed := time.Since(start)
			if err != nil {
				t.Fatalf("OCR: %v", err)
			}
			t.Logf("OCR of a 640x160 %s took %v: %+v", tc.ext, elapsed, res)
			if !strings.Contains(strings.ToUpper(res.Text), "SLUICE 2026") {
				t.Errorf("text %q, want it to contain SLUICE 2026", res.Text)
			}
			if len(res.Lines) != 1 {
				t.Fatalf("lines %+v, want one", res.Lines)
			}
			if c := res.Lines[0].Confidence; c <= 0.5 || c > 1 {
				t.Errorf("confidence %v, want in (0.5, 1] for clean large text", c)
			}
			if usage.Images != 1 {
				t.Errorf("usage %+v, want 1 image", usage)
			}
		})
	}
}

func TestTesseractBlankImageHasNoText(t *testing.T) {
	requireTesseract(t)
	tp := newTestTesseract(t, ProviderConfig{})
	out := filepath.Join(t.TempDir(), "blank.png")
	mediatest.Run(t, "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
		"-f", "lavfi", "-i", "color=white:s=320x240", "-frames:v", "1", out)
	img, _ := os.ReadFile(out)
	res, _, err := tp.OCR(context.Background(), OCRRequest{Image: Image{Data: img}})
	if err != nil {
		t.Fatalf("OCR: %v", err)
	}
	if res.Text != "" || len(res.Lines) != 0 {
		t.Errorf("got %+v, want no text", res)
	}
}

func TestTesseractMissingBinary(t *testing.T) {
	bogus := filepath.Join(t.TempDir(), "no-such-tesseract")
	tp := newTestTesseract(t, ProviderConfig{Name: "ocr-local", Command: bogus})
	err := tp.Available(context.Background())
	if err == nil {
		t.Fatal("Available: nil for a missing binary")
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("Available: %v, want ErrUnavailable", err)
	}
	for _, want := range []string{"ocr-local", "tesseract not found", bogus, "tesseract-ocr"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Available: %q, want it to say %q", err, want)
		}
	}
	if _, _, err := tp.OCR(context.Background(), OCRRequest{Image: Image{Data: []byte("\x89PNG\r\n\x1a\n")}}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("OCR: %v, want ErrUnavailable", err)
	}
	if got := tp.Model(TaskOCR); got != "tesseract" {
		t.Errorf("Model(ocr) = %q without the tool, want tesseract", got)
	}
}

func TestTesseractLanguages(t *testing.T) {
	requireTesseract(t)
	if _, err := NewTesseract(ProviderConfig{Languages: []string{"../eng"}}); err == nil {
		t.Error("NewTesseract took language ../eng")
	}
	if _, err := NewTesseract(ProviderConfig{Models: map[Task]string{TaskDescribe: "x"}}); err == nil {
		t.Error("NewTesseract took a model for describe")
	}
	// A provider whose default language is not installed is unavailable.
	tp := newTestTesseract(t, ProviderConfig{Languages: []string{"qqq"}})
	err := tp.Available(context.Background())
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "tesseract-ocr-qqq") {
		t.Errorf("Available with qqq: %v, want ErrUnavailable naming tesseract-ocr-qqq", err)
	}
	// A request for a missing language fails before the tool runs.
	tp = newTestTesseract(t, ProviderConfig{})
	img := textFrame(t, "SLUICE", ".png")
	_, _, err = tp.OCR(context.Background(), OCRRequest{Image: Image{Data: img}, Languages: []string{"eng", "qqq"}})
	if err == nil || !strings.Contains(err.Error(), "tesseract-ocr-qqq") || strings.Contains(err.Error(), "tesseract-ocr-eng") {
		t.Errorf("OCR with eng+qqq: %v, want an error naming only tesseract-ocr-qqq", err)
	}
	_, _, err = tp.OCR(context.Background(), OCRRequest{Image: Image{Data: img}, Languages: []string{"eng -c x=1"}})
	var pe *ProviderError
	if !errors.As(err, &pe) || pe.Code != "invalid_language" {
		t.Errorf("OCR with a bad code: %v, want ProviderError invalid_language", err)
	}
}

// Tesseract reads stdin that is not an image as a list of files to OCR;
// the provider must never let it.
func TestTesseractRefusesFileList(t *testing.T) {
	requireTesseract(t)
	tp := newTestTesseract(t, ProviderConfig{})
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret.png")
	if err := os.WriteFile(secret, textFrame(t, "SECRET", ".png"), 0o600); err != nil {
		t.Fatal(err)
	}
	res, _, err := tp.OCR(context.Background(), OCRRequest{Image: Image{Data: []byte(secret + "\n"), ContentType: "image/png"}})
	var pe *ProviderError
	if !errors.As(err, &pe) || pe.Code != "invalid_image" || pe.Temporary {
		t.Fatalf("OCR of a file list: %+v, %v; want a permanent invalid_image ProviderError", res, err)
	}
	if res.Text != "" || strings.Contains(err.Error(), "SECRET") {
		t.Errorf("error %q leaks the file's text", err)
	}
}

func TestTesseractCorruptImage(t *testing.T) {
	requireTesseract(t)
	tp := newTestTesseract(t, ProviderConfig{})
	img := textFrame(t, "SLUICE", ".png")
	_, _, err := tp.OCR(context.Background(), OCRRequest{Image: Image{Data: img[:40]}})
	var pe *ProviderError
	if !errors.As(err, &pe) || pe.Code != "tesseract_failed" || pe.Temporary {
		t.Fatalf("OCR of a truncated PNG: %v, want a permanent tesseract_failed ProviderError", err)
	}
}

func TestTesseractCancelKillsChild(t *testing.T) {
	path := requireTesseract(t)
	img := textFrame(t, "SLUICE", ".png")

	t.Run("tesseract", func(t *testing.T) {
		tp := newTestTesseract(t, ProviderConfig{})
		if err := tp.Available(context.Background()); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var pid int
		tp.started = func(p int) { pid = p; cancel() }
		_, _, err := tp.OCR(ctx, OCRRequest{Image: Image{Data: img}})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("OCR canceled once tesseract started: %v, want context.Canceled", err)
		}
		var pe *ProviderError
		if !errors.As(err, &pe) || pe.Temporary {
			t.Errorf("OCR canceled: %v, want a ProviderError, not temporary", err)
		}
		if pid == 0 {
			t.Fatal("tesseract never started")
		}
		waitGone(t, pid)
	})

	// A wrapper that leaves a child behind: the whole process group goes.
	t.Run("process group", func(t *testing.T) {
		dir := t.TempDir()
		childFile := filepath.Join(dir, "child")
		script := filepath.Join(dir, "tesseract")
		body := fmt.Sprintf("#!/bin/sh\ncase \"$1\" in\nstdin) /bin/sleep 600 & echo $! > %s.tmp; mv %s.tmp %s; wait ;;\n*) exec %s \"$@\" ;;\nesac\n",
			childFile, childFile, childFile, path)
		if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
		tp := newTestTesseract(t, ProviderConfig{Command: script})
		if err := tp.Available(context.Background()); err != nil {
			t.Fatalf("Available through the wrapper: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		child := make(chan int, 1)
		go func() {
			for ctx.Err() == nil {
				if b, err := os.ReadFile(childFile); err == nil {
					n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
					child <- n
					cancel()
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
		_, _, err := tp.OCR(ctx, OCRRequest{Image: Image{Data: img}})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("OCR: %v, want context.Canceled", err)
		}
		select {
		case pid := <-child:
			waitGone(t, pid)
		default:
			t.Fatal("the wrapper's child never started")
		}
	})
}

// waitGone fails the test unless process pid is gone (or a zombie
// waiting for init) within half a minute.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if !processAlive(pid) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d still running", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func processAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) STATE ...: Z is a zombie, X dead.
	s := string(stat)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z' && s[i+2] != 'X'
	}
	return true
}

func TestParseTesseractTSV(t *testing.T) {
	tsv := "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n" +
		"1\t1\t0\t0\t0\t0\t0\t0\t640\t160\t-1\t\n" +
		"4\t1\t1\t1\t1\t0\t24\t40\t404\t49\t-1\t\n" +
		"5\t1\t1\t1\t1\t1\t24\t40\t220\t49\t90\tHello\n" +
		"5\t1\t1\t1\t1\t2\t273\t40\t155\t49\t70\tworld\n" +
		"5\t1\t1\t1\t2\t1\t24\t90\t155\t49\t50\t \n" +
		"5\t1\t2\t1\t1\t1\t24\t140\t155\t49\t100\tagain\n"
	got, err := parseTesseractTSV(tsv)
	if err != nil {
		t.Fatal(err)
	}
	want := OCRResult{Text: "Hello world\nagain", Lines: []OCRLine{{"Hello world", 0.8}, {"again", 1}}}
	if got.Text != want.Text || len(got.Lines) != 2 ||
		got.Lines[0].Text != want.Lines[0].Text || fmt.Sprintf("%.3f", got.Lines[0].Confidence) != "0.800" ||
		got.Lines[1] != want.Lines[1] {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if _, err := parseTesseractTSV("Error in pixReadMem\n"); err == nil {
		t.Error("parsed non-TSV output")
	}
}

// BenchmarkTesseractOCR measures one OCR call (a child process per image)
// on a 640x160 frame of text.
func BenchmarkTesseractOCR(b *testing.B) {
	requireTesseract(b)
	tp := newTestTesseract(b, ProviderConfig{})
	img := textFrame(b, "SLUICE 2026", ".png")
	ctx := context.Background()
	if err := tp.Available(ctx); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, _, err := tp.OCR(ctx, OCRRequest{Image: Image{Data: img}}); err != nil {
			b.Fatal(err)
		}
	}
}
