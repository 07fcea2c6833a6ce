// Package media runs FFmpeg for Sluice: the engines that execute ffmpeg and
// ffprobe (a WebAssembly build in-process, and the native binaries in a
// sandboxed child process), and the media step types built on them:
// probe, thumbnail, audio, waveform, image, hls, mp4, storyboard, preview,
// analyze, watermark and the custom ffmpeg step (see Types). Steps build
// FFmpeg arguments against the Engine interface and never name host
// paths: InputArg, Out and FilterOut stand for them, and each engine maps
// them to what it can see.
//
// Untrusted input is the normal case here, so every invocation is fenced
// the same way: the input is opened with only the file protocol, probing
// accepts only demuxers that read nothing but the one file (no playlists,
// concat scripts or image sequences that could reach other files or the
// network), later runs pin the probed demuxer, and each child process runs
// under a timeout, in the job's own directory, with an empty environment
// and resource limits.
package media

import (
	"context"
	"strconv"
	"strings"

	"github.com/sluice-media/sluice/internal/pipeline"
)

// Engine runs FFmpeg tools. Steps depend on this interface so that the
// sandboxed WebAssembly build and the native binaries are interchangeable.
type Engine interface {
	// Name is "native" or "wasm".
	Name() string
	// Probe describes the media file at input. Input that is not
	// acceptable media yields a *pipeline.MediaError.
	Probe(ctx context.Context, input string) (*pipeline.Media, error)
	// FFmpeg runs one ffmpeg command. A non-zero exit yields a
	// *pipeline.MediaError carrying FFmpeg's last error line.
	FFmpeg(ctx context.Context, cmd Command) error
}

// Command is one ffmpeg run. Args name the input as InputArg and each
// output file as Out(name); every engine maps these to paths it can see
// (the WebAssembly engine sees only the input's directory, read-only, and
// Dir).
type Command struct {
	Input string // host path of the input, or "" for none
	Dir   string // host directory the outputs are written to
	Args  []string
}

// InputArg stands for the input file in Command.Args.
const InputArg = "\x00input"

const outPrefix = "\x00out:"

// Out stands for the output file name in Command.Args.
func Out(name string) string { return outPrefix + name }

const filterOutPrefix, filterOutEnd = "\x00filterout:", "\x00"

// FilterOut stands for the output file name inside a filter graph, as the
// value of a filter option that names a file (ametadata's file=, say):
// each engine puts its own path for it there, escaped for the option and
// filter graph levels. Unlike Out, it may be part of a longer argument.
func FilterOut(name string) string { return filterOutPrefix + name + filterOutEnd }

// mapArgs replaces InputArg, Out and FilterOut references with real paths.
func mapArgs(args []string, input string, out func(name string) string) []string {
	mapped := make([]string, len(args))
	for i, a := range args {
		switch {
		case a == InputArg:
			mapped[i] = "file:" + input
		case strings.HasPrefix(a, outPrefix):
			mapped[i] = out(strings.TrimPrefix(a, outPrefix))
		default:
			mapped[i] = mapFilterOuts(a, out)
		}
	}
	return mapped
}

// mapFilterOuts replaces the FilterOut references in a.
func mapFilterOuts(a string, out func(name string) string) string {
	var b strings.Builder
	for {
		before, rest, ok := strings.Cut(a, filterOutPrefix)
		if !ok {
			break
		}
		name, after, _ := strings.Cut(rest, filterOutEnd)
		b.WriteString(before)
		// The option parser unescapes once, the graph parser before it
		// once more.
		b.WriteString(escapeFilter(escapeFilter(out(name), `\':`), `\'[],;`))
		a = after
	}
	return b.String() + a
}

// escapeFilter backslash-escapes special characters and whitespace, as
// FFmpeg's av_get_token reads them.
func escapeFilter(s, special string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(special, r) || strings.ContainsRune(" \t\r\n", r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// allowedDemuxers are the input formats Sluice accepts: each reads only
// the stream it is given. Deliberately absent: hls, dash, concat, image2
// (file patterns), sdp/rtp/rtsp, tty and lavfi.
var allowedDemuxers = []string{
	// containers
	"mov", "matroska", "avi", "flv", "mpegts", "mpeg", "asf", "ogg", "mxf",
	"nut", "dv", "ivf", "webm", "3gp",
	// raw video bitstreams
	"h264", "hevc", "m4v", "mpegvideo", "av1", "obu",
	// audio
	"mp3", "wav", "w64", "flac", "aac", "aiff", "caf", "amr", "ape", "wv",
	"au", "ac3", "eac3", "dts", "tta", "opus",
	// single images, for stills
	"png_pipe", "jpeg_pipe", "webp_pipe", "gif", "bmp_pipe", "tiff_pipe",
}

// MaxPixels is the largest picture FFmpeg may decode (8192x8192). A few
// bytes of PNG or JPEG header can declare a 16000x16000 picture whose
// frame takes gigabytes; decoders refuse anything larger than this
// before allocating.
const MaxPixels = 8192 * 8192

var maxPixels = strconv.Itoa(MaxPixels)

// formatWhitelist is the value of ffprobe's -format_whitelist.
var formatWhitelist = strings.Join(allowedDemuxers, ",")

// inputArgs open the input with the demuxer pinned, reading only that file.
func inputArgs(m *pipeline.Media) []string {
	return []string{"-protocol_whitelist", "file", "-max_pixels", maxPixels, "-f", m.Format, "-i", InputArg}
}

// whitelistedInputArgs open the input before it has been probed: any
// demuxer in the allowlist, reading only that file.
func whitelistedInputArgs() []string {
	return []string{"-protocol_whitelist", "file", "-max_pixels", maxPixels, "-format_whitelist", formatWhitelist, "-i", InputArg}
}

// globalArgs precede every ffmpeg command.
var globalArgs = []string{"-hide_banner", "-nostdin", "-loglevel", "error", "-y"}
