package media

import (
	"context"
	"strconv"

	"github.com/sluice-media/sluice/internal/pipeline"
)

// ExtractAudio writes the first audio track of input, resampled to rate Hz
// mono, as FLAC to dir/name: from start seconds for dur seconds (0: to the
// end). Speech recognition wants exactly this, and FLAC keeps it small
// (about 1 MB a minute at 16 kHz) for provider upload limits. It is light
// work: the engine is picked as for probing.
func ExtractAudio(ctx context.Context, e *Engines, mode, input string, m *pipeline.Media, dir, name string, rate int, start, dur float64) error {
	if m == nil || m.Audio() == nil {
		return pipeline.Invalid("the input has no audio")
	}
	var args []string
	if start > 0 {
		args = append(args, "-ss", strconv.FormatFloat(start, 'f', 3, 64))
	}
	if dur > 0 {
		args = append(args, "-t", strconv.FormatFloat(dur, 'f', 3, 64))
	}
	args = append(args, inputArgs(m)...)
	args = append(args, "-map", "0:a:0", "-vn", "-sn", "-dn", "-map_metadata", "-1",
		"-ac", "1", "-ar", strconv.Itoa(rate), "-c:a", "flac", "-f", "flac", Out(name))
	eng, err := e.Pick(mode, false)
	if err != nil {
		return err
	}
	return eng.FFmpeg(ctx, Command{Input: input, Dir: dir, Args: args})
}
