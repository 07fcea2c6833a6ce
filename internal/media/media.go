// Package media runs FFmpeg for Sluice: the engines that execute ffmpeg and
// ffprobe, and the media steps (probe, thumbnail, audio) built on them.
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
	"strings"

	"github.com/sluice-media/sluice/internal/pipeline"
)

// Engine runs FFmpeg tools. Steps depend on this interface so that a
// sandboxed WebAssembly build can stand in for the native binaries.
type Engine interface {
	// Probe describes the media file at input. Input that is not
	// acceptable media yields a *pipeline.MediaError.
	Probe(ctx context.Context, input string) (*pipeline.Media, error)
	// FFmpeg runs ffmpeg with args (after the engine's own global options)
	// in dir, where outputs named by relative paths are written.
	FFmpeg(ctx context.Context, dir string, args []string) error
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

// formatWhitelist is the value of ffprobe's -format_whitelist.
var formatWhitelist = strings.Join(allowedDemuxers, ",")

// inputArgs open input with the demuxer pinned, reading only that file.
func inputArgs(m *pipeline.Media, input string) []string {
	return []string{"-protocol_whitelist", "file", "-f", m.Format, "-i", "file:" + input}
}

// whitelistedInputArgs open input before it has been probed: any demuxer
// in the allowlist, reading only that file.
func whitelistedInputArgs(input string) []string {
	return []string{"-protocol_whitelist", "file", "-format_whitelist", formatWhitelist, "-i", "file:" + input}
}
