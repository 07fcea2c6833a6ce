package media

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-media/sluice/internal/mediatest"
	"github.com/sluice-media/sluice/internal/pipeline"
)

func TestH264Args(t *testing.T) {
	for _, tt := range []struct {
		name string
		h    H264
		vf   string
		args string
	}{
		{"x264 defaults", SoftwareH264(H264Options{}), "scale=320:-2,format=yuv420p",
			"-c:v libx264 -preset veryfast -crf 23"},
		{"x264 capped", SoftwareH264(H264Options{CRF: 26, Preset: "slow", MaxRate: "3000k", BufSize: "6000k"}), "scale=320:-2,format=yuv420p",
			"-c:v libx264 -preset slow -crf 26 -maxrate 3000k -bufsize 6000k"},
		{"nvenc", hardwareH264(HWNVENC, "", H264Options{Preset: "slow"}), "scale=320:-2,format=yuv420p",
			"-hwaccel cuda | -c:v h264_nvenc -preset p5 -rc vbr -cq 23 -b:v 0"},
		{"vaapi", hardwareH264(HWVAAPI, "/dev/dri/renderD128", H264Options{CRF: 20}), "scale=320:-2,format=nv12,hwupload",
			"-vaapi_device /dev/dri/renderD128 | -c:v h264_vaapi -rc_mode CQP -qp 20"},
		{"vaapi capped", hardwareH264(HWVAAPI, "/dev/dri/renderD129", H264Options{MaxRate: "2M", BufSize: "4M"}), "scale=320:-2,format=nv12,hwupload",
			"-vaapi_device /dev/dri/renderD129 | -c:v h264_vaapi -rc_mode VBR -b:v 2M -maxrate 2M -bufsize 4M"},
		{"qsv", hardwareH264(HWQSV, "", H264Options{Preset: "ultrafast"}), "scale=320:-2,format=nv12",
			"-c:v h264_qsv -preset veryfast -global_quality 23"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := strings.Join(tt.h.Codec, " ")
			if len(tt.h.Input) > 0 {
				args = strings.Join(tt.h.Input, " ") + " | " + args
			}
			if args != tt.args {
				t.Errorf("args %q, want %q", args, tt.args)
			}
			if vf := tt.h.VF("scale=320:-2"); vf != tt.vf {
				t.Errorf("VF %q, want %q", vf, tt.vf)
			}
		})
	}
	if vf := SoftwareH264(H264Options{}).VF(""); vf != "format=yuv420p" {
		t.Errorf("VF of no chain %q, want the format alone", vf)
	}
}

// hwDevicePresent reports whether this machine has the device kind needs.
func hwDevicePresent(kind string) bool {
	var patterns []string
	switch kind {
	case HWNVENC:
		patterns = []string{"/dev/nvidiactl", "/dev/nvidia0"}
	case HWVAAPI, HWQSV:
		patterns = []string{"/dev/dri/renderD*"}
	case HWAuto:
		return hwDevicePresent(HWNVENC) || hwDevicePresent(HWVAAPI)
	}
	for _, p := range patterns {
		if m, _ := filepath.Glob(p); len(m) > 0 {
			return true
		}
	}
	return false
}

// encodeCase encodes a one-second clip through Engines.EncodeH264 at
// 160x90 and returns the encoders build was called with.
func encodeCase(t *testing.T, e *Engines, in string, m *pipeline.Media) []string {
	t.Helper()
	dir := t.TempDir()
	var used []string
	err := e.EncodeH264(context.Background(), "", H264Options{Preset: "ultrafast"}, func(h H264) Command {
		used = append(used, h.Encoder)
		return Command{Input: in, Dir: dir, Args: slices.Concat(h.Input, inputArgs(m),
			[]string{"-vf", h.VF("scale=160:-2")}, h.Codec, []string{Out("out.mp4")})}
	})
	if err != nil {
		t.Fatalf("encode with %v: %v", used, err)
	}
	out := filepath.Join(dir, "out.mp4")
	if w, h := mediatest.Dimensions(t, out); w != 160 || h != 90 {
		t.Errorf("output %dx%d, want 160x90", w, h)
	}
	codec := mediatest.Run(t, "ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=codec_name", "-of", "csv=p=0", out)
	if got := strings.TrimSpace(string(codec)); got != "h264" {
		t.Errorf("output codec %q, want h264", got)
	}
	return used
}

// TestHWAccelUnavailable: hardware acceleration configured where its
// device is missing is detected as unavailable, says why, and encodes
// with libx264. Where the device exists, the encode must still work.
func TestHWAccelUnavailable(t *testing.T) {
	for kind, reason := range map[string]string{
		HWVAAPI: "no DRM render node",
		HWQSV:   "no DRM render node",
		HWNVENC: "no NVIDIA device",
		HWAuto:  "nvenc: no NVIDIA device",
	} {
		t.Run(kind, func(t *testing.T) {
			var log bytes.Buffer
			n := sandboxNative(t, func(c *NativeConfig) {
				c.HWAccel = kind
				c.Log = slog.New(slog.NewTextHandler(&log, nil))
			})
			in, m := sandboxClip(t, n)
			used := encodeCase(t, &Engines{Native: n, Default: ModeNative}, in, m)
			t.Logf("%s: %s; encoders used %v", kind, n.HWAccel(), used)
			if hwDevicePresent(kind) {
				t.Logf("this machine has a %s device: detection chose %s", kind, n.HWAccel())
				return
			}
			if got := n.HWAccel(); !strings.HasPrefix(got, "libx264 (") || !strings.Contains(got, reason) {
				t.Errorf("HWAccel() = %q, want libx264 because of %q", got, reason)
			}
			if !slices.Equal(used, []string{"libx264"}) {
				t.Errorf("encoders used %v, want libx264 only", used)
			}
			if !strings.Contains(log.String(), "libx264") {
				t.Errorf("nothing logged about the missing %s encoder: %q", kind, log.String())
			}
		})
	}
}

// TestHWAccelFallbackOnFailure forces a hardware encoder whose device
// does not exist: each encode fails on it and is run again with libx264,
// and after three failures in a row hardware encoding is turned off.
func TestHWAccelFallbackOnFailure(t *testing.T) {
	var log bytes.Buffer
	n := sandboxNative(t, func(c *NativeConfig) { c.Log = slog.New(slog.NewTextHandler(&log, nil)) })
	missing := filepath.Join(t.TempDir(), "renderD128")
	n.hw.kind, n.hw.device = HWVAAPI, missing
	e := &Engines{Native: n, Default: ModeNative}
	in, m := sandboxClip(t, n)

	for i := 1; i <= maxHWFailures; i++ {
		used := encodeCase(t, e, in, m)
		if !slices.Equal(used, []string{"h264_vaapi", "libx264"}) {
			t.Fatalf("encode %d used %v, want h264_vaapi, then libx264", i, used)
		}
		if got := n.hw.failures.Load(); got != int32(i) {
			t.Errorf("after encode %d: %d failures remembered", i, got)
		}
		if i == 1 && n.HWAccel() != "h264_vaapi on "+missing+", libx264 where it fails" {
			t.Errorf("HWAccel() = %q after one failure", n.HWAccel())
		}
	}
	if !strings.Contains(log.String(), "hardware H.264 encode failed") || !strings.Contains(log.String(), "encoder=h264_vaapi") {
		t.Errorf("the failures were not logged: %q", log.String())
	}
	if got := n.HWAccel(); !strings.Contains(got, "turned off after 3 failed encodes") {
		t.Errorf("HWAccel() = %q, want hardware turned off", got)
	}
	if used := encodeCase(t, e, in, m); !slices.Equal(used, []string{"libx264"}) {
		t.Errorf("after hardware was turned off, the encode used %v", used)
	}

	// A run cut short by its context is not a hardware failure: no rerun.
	n.hw.off.Store(false)
	n.hw.failures.Store(0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls := 0
	err := e.EncodeH264(ctx, ModeNative, H264Options{}, func(h H264) Command {
		calls++
		return Command{Input: in, Dir: t.TempDir(), Args: slices.Concat(h.Input, inputArgs(m), h.Codec, []string{Out("x.mp4")})}
	})
	if !errors.Is(err, context.Canceled) || calls != 1 || n.hw.failures.Load() != 0 {
		t.Errorf("cancelled encode: err %v after %d builds, %d failures; want context.Canceled, 1, 0", err, calls, n.hw.failures.Load())
	}
}

// TestHWAccelDeviceSetting: a configured DRM node that does not exist is
// reported, not silently replaced by another.
func TestHWAccelDeviceSetting(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "renderD200")
	n := sandboxNative(t, func(c *NativeConfig) {
		c.HWAccel, c.HWDevice = HWVAAPI, missing
		c.Log = slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))
	})
	if got := n.HWAccel(); !strings.HasPrefix(got, "libx264 (") || !strings.Contains(got, missing) {
		t.Errorf("HWAccel() = %q, want libx264 naming %s", got, missing)
	}
}

// TestEncodeH264Wasm: the WebAssembly engine always encodes with libx264.
func TestEncodeH264Wasm(t *testing.T) {
	n := sandboxNative(t, nil)
	in, m := sandboxClip(t, n)
	w := NewWasm(WasmConfig{CacheDir: mediatest.WasmCacheDir()})
	defer w.Close()
	used := encodeCase(t, &Engines{Native: n, Wasm: w, Default: ModeWasm}, in, m)
	if !slices.Equal(used, []string{"libx264"}) {
		t.Errorf("encoders used %v, want libx264", used)
	}
}
