package media

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Hardware acceleration settings (NativeConfig.HWAccel).
const (
	HWNone  = "none"
	HWAuto  = "auto"
	HWNVENC = "nvenc" // NVIDIA: NVDEC decoding, NVENC encoding
	HWVAAPI = "vaapi" // Intel and AMD through VA-API
	HWQSV   = "qsv"   // Intel Quick Sync
)

// H264Options is what an encode asks of H.264, in libx264's terms; a
// hardware encoder gets its nearest equivalents.
type H264Options struct {
	// CRF is the constant-quality target, 1 (best) to 51; 0 means 23.
	CRF int
	// Preset is a libx264 preset, ultrafast to veryslow; "" means veryfast.
	Preset string
	// MaxRate and BufSize cap the bitrate, as in "3000k"; "" for no cap.
	MaxRate, BufSize string
}

// H264 is one way to encode H.264 in an ffmpeg command: an encoder, and
// what it needs before the input and at the end of the filter graph. A
// step builds its command from it:
//
//	args := slices.Concat(h.Input, inputArgs(job.Media),
//		[]string{"-vf", h.VF("scale=-2:720")}, h.Codec,
//		[]string{"-g", "48", Out("video.mp4")})
//
// Options every encoder takes (-g, -force_key_frames, -profile:v, -bf)
// may follow Codec; libx264's own (-x264-params, -tune) may not, nor
// -pix_fmt: VF sets the pixel format.
type H264 struct {
	// Encoder is libx264, h264_nvenc, h264_vaapi or h264_qsv.
	Encoder string
	// Input goes before the input's options: device setup and hardware
	// decoding.
	Input []string
	// Format ends the video filter graph: the pixel format the encoder
	// takes, and the upload to the device where it needs one.
	Format string
	// Codec selects the encoder and its rate control.
	Codec []string
}

// VF is the filter chain (may be "") followed by Format: the value of -vf.
func (h H264) VF(chain string) string {
	if chain == "" {
		return h.Format
	}
	return chain + "," + h.Format
}

// Hardware reports whether h encodes on a device.
func (h H264) Hardware() bool { return h.Encoder != "libx264" }

// h264PresetOrder ranks libx264's presets, fastest first.
var h264PresetOrder = []string{"ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo"}

func (o H264Options) crf() string {
	if o.CRF <= 0 {
		return "23"
	}
	return strconv.Itoa(min(o.CRF, 51))
}

// preset is the index of o.Preset in h264PresetOrder (veryfast when unknown).
func (o H264Options) preset() int {
	if i := slices.Index(h264PresetOrder, o.Preset); i >= 0 {
		return i
	}
	return 2
}

// rateCap appends -maxrate and -bufsize when o caps the bitrate.
func (o H264Options) rateCap(args []string) []string {
	if o.MaxRate != "" {
		args = append(args, "-maxrate", o.MaxRate)
	}
	if o.BufSize != "" {
		args = append(args, "-bufsize", o.BufSize)
	}
	return args
}

// SoftwareH264 is libx264, the encoder every engine has.
func SoftwareH264(o H264Options) H264 {
	return H264{
		Encoder: "libx264",
		Format:  "format=yuv420p",
		Codec:   o.rateCap([]string{"-c:v", "libx264", "-preset", h264PresetOrder[o.preset()], "-crf", o.crf()}),
	}
}

// hardwareH264 is the encoder of kind on device.
func hardwareH264(kind, device string, o H264Options) H264 {
	switch kind {
	case HWNVENC:
		// p1 (fastest) to p7 (best), against libx264's ten presets.
		p := []string{"p1", "p1", "p2", "p3", "p3", "p4", "p5", "p6", "p7", "p7"}[o.preset()]
		return H264{
			Encoder: "h264_nvenc",
			// Decoded frames come back to memory for the software filters;
			// codecs NVDEC lacks decode in software.
			Input:  []string{"-hwaccel", "cuda"},
			Format: "format=yuv420p",
			Codec:  o.rateCap([]string{"-c:v", "h264_nvenc", "-preset", p, "-rc", "vbr", "-cq", o.crf(), "-b:v", "0"}),
		}
	case HWVAAPI:
		codec := []string{"-c:v", "h264_vaapi", "-rc_mode", "CQP", "-qp", o.crf()}
		if o.MaxRate != "" {
			codec = o.rateCap([]string{"-c:v", "h264_vaapi", "-rc_mode", "VBR", "-b:v", o.MaxRate})
		}
		return H264{
			Encoder: "h264_vaapi",
			Input:   []string{"-vaapi_device", device},
			Format:  "format=nv12,hwupload",
			Codec:   codec,
		}
	case HWQSV:
		p := h264PresetOrder[min(max(o.preset(), 2), 8)] // veryfast to veryslow
		codec := []string{"-c:v", "h264_qsv", "-preset", p, "-global_quality", o.crf()}
		if o.MaxRate != "" {
			codec = o.rateCap([]string{"-c:v", "h264_qsv", "-preset", p, "-b:v", o.MaxRate})
		}
		return H264{Encoder: "h264_qsv", Format: "format=nv12", Codec: codec}
	}
	return SoftwareH264(o)
}

// hwEncoders names each kind's H.264 encoder.
var hwEncoders = map[string]string{HWNVENC: "h264_nvenc", HWVAAPI: "h264_vaapi", HWQSV: "h264_qsv"}

// maxHWFailures in a row turn hardware encoding off for the process: one
// failure may be the input's (a size or profile the device lacks), three
// in a row say the device is not working.
const maxHWFailures = 3

// hwState is the hardware encoder detectHW found.
type hwState struct {
	kind, device string // "" when encoding in software
	why          string // why not, when kind is ""
	failures     atomic.Int32
	off          atomic.Bool
}

// EncodeH264 runs an H.264 encode on the engine for mode (encodes are
// heavy): build returns the command for an encoder. On native FFmpeg with
// a working hardware encoder (NativeConfig.HWAccel) it is that one, and
// when its run fails, for any reason but ctx ending, the encode runs once
// more with libx264; build is then called again and the new run
// overwrites the failed one's files. Elsewhere it is libx264.
func (e *Engines) EncodeH264(ctx context.Context, mode string, o H264Options, build func(H264) Command) error {
	eng, err := e.Pick(mode, true)
	if err != nil {
		return err
	}
	if n, ok := eng.(*Native); ok {
		return n.encodeH264(ctx, o, build)
	}
	return eng.FFmpeg(ctx, build(SoftwareH264(o)))
}

func (n *Native) encodeH264(ctx context.Context, o H264Options, build func(H264) Command) error {
	if n.hw.kind == "" || n.hw.off.Load() {
		return n.FFmpeg(ctx, build(SoftwareH264(o)))
	}
	h := hardwareH264(n.hw.kind, n.hw.device, o)
	err := n.FFmpeg(ctx, build(h))
	if err == nil {
		n.hw.failures.Store(0)
		return nil
	}
	if ctx.Err() != nil {
		return err
	}
	failures := n.hw.failures.Add(1)
	n.log.Warn("hardware H.264 encode failed; encoding again with libx264", "encoder", h.Encoder, "err", err)
	if failures >= maxHWFailures && n.hw.off.CompareAndSwap(false, true) {
		n.log.Error("hardware H.264 encoding turned off after failing repeatedly", "encoder", h.Encoder, "failures", failures)
	}
	return n.FFmpeg(ctx, build(SoftwareH264(o)))
}

// HWAccel describes the H.264 encoder encodes use, in one line for logs
// and /readyz.
func (n *Native) HWAccel() string {
	switch {
	case n.hw.kind == "":
		return "libx264 (" + n.hw.why + ")"
	case n.hw.off.Load():
		return fmt.Sprintf("libx264 (%s turned off after %d failed encodes in a row)", hwEncoders[n.hw.kind], maxHWFailures)
	case n.hw.device != "":
		return hwEncoders[n.hw.kind] + " on " + n.hw.device + ", libx264 where it fails"
	}
	return hwEncoders[n.hw.kind] + ", libx264 where it fails"
}

// detectHW finds the hardware encoder HWAccel asks for: one ffmpeg has,
// whose device is present, and that encodes a few frames here.
func (n *Native) detectHW(ctx context.Context) {
	want := n.cfg.HWAccel
	if want == "" || want == HWNone {
		n.hw.why = "no hardware acceleration configured"
		return
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	stdout := &boundedBuffer{max: 1 << 20}
	stderr := &boundedBuffer{max: 16 << 10, keepTail: true}
	if _, err := n.run(ctx, "", n.ffmpeg, []string{"-hide_banner", "-encoders"}, stdout, stderr); err != nil {
		n.hw.why = fmt.Sprintf("ffmpeg -encoders failed: %v: %s", err, lastLine(stderr.String()))
		n.log.Warn("hardware H.264 encoding unavailable", "reason", n.hw.why)
		return
	}
	var encoders []string
	for _, line := range strings.Split(stdout.String(), "\n") {
		if f := strings.Fields(line); len(f) >= 2 {
			encoders = append(encoders, f[1])
		}
	}
	kinds := []string{want}
	if want == HWAuto {
		kinds = []string{HWNVENC, HWQSV, HWVAAPI}
	}
	var whys []string
	for _, kind := range kinds {
		dev, err := n.hwDevice(kind, encoders, want == HWAuto)
		if err == nil {
			err = n.FFmpeg(ctx, testEncode(hardwareH264(kind, dev, H264Options{})))
		}
		if err != nil {
			whys = append(whys, kind+": "+err.Error())
			continue
		}
		n.hw.kind, n.hw.device = kind, dev
		n.log.Info("hardware H.264 encoding", "encoder", n.HWAccel())
		return
	}
	n.hw.why = strings.Join(whys, "; ")
	if want == HWAuto {
		n.log.Info("no hardware H.264 encoder; encoding with libx264", "reason", n.hw.why)
	} else {
		n.log.Warn("hardware H.264 encoder unavailable; encoding with libx264", "reason", n.hw.why)
	}
}

// hwDevice checks that ffmpeg has kind's encoder and that its device is
// present, and returns the device (the DRM node; "" for NVENC).
func (n *Native) hwDevice(kind string, encoders []string, auto bool) (string, error) {
	if enc := hwEncoders[kind]; !slices.Contains(encoders, enc) {
		return "", fmt.Errorf("ffmpeg has no %s encoder", enc)
	}
	if kind == HWNVENC {
		for _, dev := range []string{"/dev/nvidiactl", "/dev/nvidia0"} {
			if _, err := os.Stat(dev); err == nil {
				return "", nil
			}
		}
		return "", fmt.Errorf("no NVIDIA device (/dev/nvidiactl)")
	}
	dev := n.cfg.HWDevice
	if dev == "" {
		nodes, _ := filepath.Glob("/dev/dri/renderD*")
		if len(nodes) == 0 {
			return "", fmt.Errorf("no DRM render node (/dev/dri/renderD*)")
		}
		dev = nodes[0]
	} else if _, err := os.Stat(dev); err != nil {
		return "", err
	}
	if kind == HWQSV && auto {
		b, _ := os.ReadFile(filepath.Join("/sys/class/drm", filepath.Base(dev), "device/vendor"))
		if strings.TrimSpace(string(b)) != "0x8086" {
			return "", fmt.Errorf("%s is not an Intel GPU", dev)
		}
	}
	return dev, nil
}

// testEncode encodes a few generated frames with h, writing nothing.
func testEncode(h H264) Command {
	return Command{Args: slices.Concat(h.Input,
		[]string{"-f", "lavfi", "-i", "color=c=black:s=320x240:r=25", "-frames:v", "3", "-vf", h.VF("")},
		h.Codec, []string{"-f", "null", "-"})}
}
