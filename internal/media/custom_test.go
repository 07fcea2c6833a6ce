package media_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/media"
	"github.com/sluice-media/sluice/internal/mediatest"
	"github.com/sluice-media/sluice/internal/pipeline"
)

// runCustom probes input and runs step on it.
func runCustom(t *testing.T, e *media.Engines, input string, s pipeline.Step) (*pipeline.Job, pipeline.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	job := &pipeline.Job{AssetID: "a", Input: input, Dir: t.TempDir()}
	res, err := (&media.Probe{Engines: e}).Run(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	job.Media = res.Media
	if !s.Applies(job) {
		t.Fatal("the ffmpeg step does not apply to a probed input")
	}
	res, err = s.Run(ctx, job)
	return job, res, err
}

// buildCustom builds an ffmpeg step from a template.
func buildCustom(t *testing.T, e *media.Engines, outputs []string, args ...string) pipeline.Step {
	t.Helper()
	s, err := media.CustomType(e).Build(map[string]any{"args": anyList(args), "outputs": anyList(outputs)})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// anyList is a list as YAML decodes one.
func anyList(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// TestCustomGIF: a template that makes a palette-optimised GIF of a
// second of the clip.
func TestCustomGIF(t *testing.T) {
	clip := mediatest.Generate(t, t.TempDir(), "c", mediatest.Clip{Width: 320, Height: 240, Duration: 2, Video: true, Audio: true})
	forEngines(t, func(t *testing.T, e *media.Engines) string {
		s := buildCustom(t, e, []string{"clip.gif"},
			"-ss", "0.5", "-t", "1", "{input}",
			"-vf", "fps=5,scale=160:-1:flags=lanczos,split[a][b];[a]palettegen[p];[b][p]paletteuse=dither=bayer",
			"-loop", "0", "{out:clip.gif}")
		job, res, err := runCustom(t, e, clip, s)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Outputs) != 1 || res.Outputs[0] != (pipeline.Output{Name: "clip.gif", ContentType: "image/gif"}) {
			t.Fatalf("outputs = %+v, want clip.gif as image/gif", res.Outputs)
		}
		out := filepath.Join(job.Dir, "clip.gif")
		w, h := mediatest.Dimensions(t, out)
		frames := strings.TrimSpace(string(mediatest.Run(t, "ffprobe", "-v", "error", "-count_frames", "-show_entries", "stream=codec_name,nb_read_frames", "-of", "csv=p=0", out)))
		if w != 160 || h != 120 || frames != "gif,5" {
			t.Errorf("GIF is %dx%d, %q, want 160x120, gif,5 (frames)", w, h, frames)
		}
		return fmt.Sprintf("%dx%d %s", w, h, frames)
	})
}

// TestCustomCrop: a template with two outputs in a subdirectory: a
// cropped, silent H.264 clip and a PNG of its first frame.
func TestCustomCrop(t *testing.T) {
	clip := mediatest.Generate(t, t.TempDir(), "c", mediatest.Clip{Width: 320, Height: 240, Duration: 1, Video: true, Audio: true})
	forEngines(t, func(t *testing.T, e *media.Engines) string {
		s, err := media.CustomType(e).Build(map[string]any{
			"args": anyList([]string{"{input}",
				"-filter_complex", "[0:v]crop=160:120:0:0,split[c][p]",
				"-map", "[c]", "-an", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "30", "-movflags", "+faststart", "-f", "mp4", "{out:crop/clip.mp4}",
				"-map", "[p]", "-frames:v", "1", "-f", "image2", "{out:crop/first.png}"}),
			"outputs": []any{"crop/clip.mp4", "crop/first.png"},
			"heavy":   true,
		})
		if err != nil {
			t.Fatal(err)
		}
		job, res, err := runCustom(t, e, clip, s)
		if err != nil {
			t.Fatal(err)
		}
		want := []pipeline.Output{{Name: "crop/clip.mp4", ContentType: "video/mp4"}, {Name: "crop/first.png", ContentType: "image/png"}}
		if fmt.Sprint(res.Outputs) != fmt.Sprint(want) {
			t.Fatalf("outputs = %+v, want %+v", res.Outputs, want)
		}
		mp4 := filepath.Join(job.Dir, "crop/clip.mp4")
		w, h := mediatest.Dimensions(t, mp4)
		d := mediatest.Duration(t, mp4)
		streams := strings.TrimSpace(string(mediatest.Run(t, "ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0", mp4)))
		if w != 160 || h != 120 || math.Abs(d-1) > 0.1 || streams != "h264" {
			t.Errorf("clip is %dx%d, %.2fs, streams %q; want 160x120, 1s, h264 alone", w, h, d, streams)
		}
		pw, ph := mediatest.Dimensions(t, filepath.Join(job.Dir, "crop/first.png"))
		if pw != 160 || ph != 120 {
			t.Errorf("first frame is %dx%d, want 160x120", pw, ph)
		}
		return fmt.Sprintf("%dx%d %.1fs %s; %dx%d", w, h, d, streams, pw, ph)
	})
}

// TestCustomOutputsChecked: after the run, a declared output that was not
// written fails the step as the input's fault, and a file that was not
// declared fails it and is deleted.
func TestCustomOutputsChecked(t *testing.T) {
	clip := mediatest.Generate(t, t.TempDir(), "c", mediatest.Clip{Width: 160, Height: 120, Duration: 1, Video: true})
	for name, e := range engines(t) {
		t.Run(name+"/not written", func(t *testing.T) {
			// Seeking past the end leaves nothing to write.
			s := buildCustom(t, e, []string{"late.png"}, "-ss", "30", "{input}", "-frames:v", "1", "-f", "image2", "{out:late.png}")
			_, _, err := runCustom(t, e, clip, s)
			if !pipeline.IsMediaError(err) || !strings.Contains(err.Error(), "late.png") {
				t.Errorf("err = %v, want a MediaError naming late.png", err)
			}
		})
	}
	t.Run("native/undeclared", func(t *testing.T) {
		// Validation makes this unreachable from a pipeline; the step
		// is built by hand to see the check after the run catch it. The
		// native engine runs in the step's directory, where a relative
		// name lands.
		e := engines(t)["native"]
		s := &media.Custom{Engines: e, Outputs: []string{"a.png"},
			Args: []string{"{input}", "-frames:v", "1", "-f", "image2", "{out:a.png}", "-frames:v", "1", "-f", "image2", "stray.png"}}
		job, _, err := runCustom(t, e, clip, s)
		if err == nil || !strings.Contains(err.Error(), "did not declare (stray.png)") {
			t.Fatalf("err = %v, want the undeclared stray.png reported", err)
		}
		if _, err := os.Stat(filepath.Join(job.Dir, "stray.png")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stray.png was not deleted: %v", err)
		}
	})
}

// TestCustomAccepted: templates that stay within the allowlists build.
func TestCustomAccepted(t *testing.T) {
	st := media.CustomType(&media.Engines{})
	for _, args := range [][]string{
		{"{input}", "-vf", "scale='min(320,iw)':-2,setsar=1", "-c:v", "libx264", "-crf", "23", "-c:a", "aac", "-b:a", "96k", "{out:a.mp4}"},
		{"-sseof", "-3", "{input}", "-map", "0:a?", "-af", "volume=0.5, aresample=48000", "-f", "ogg", "-c:a", "libopus", "{out:a.mp4}"},
		{"{input}", "-filter_complex", "[0:v]split[a][b];[a]hflip[l];[b]vflip[r];[l][r]hstack[v]", "-map", "[v]", "-metadata", "title=Mirror: a test", "{out:a.mp4}"},
		{"{input}", "-vf", `drawbox=x=0:y=0:w=10:h=10:c=red\,blue`, "-map_metadata", "-1", "-y", "{out:a.mp4}"},
		{"-ss", "1", "-t", "2", "{input}", "-lavfi", "paletteuse@p=dither=none:new=1", "-q:v", "2", "-frames:v", "1", "{out:a.mp4}"},
	} {
		if _, err := st.Build(map[string]any{"args": anyList(args), "outputs": []any{"a.mp4"}}); err != nil {
			t.Errorf("%q: %v", args, err)
		}
	}
}

// TestCustomRejected: every template that could read anything but the
// input or write anything but its declared outputs is refused when the
// pipeline loads, with a message that names the problem.
func TestCustomRejected(t *testing.T) {
	st := media.CustomType(&media.Engines{})
	out := "{out:a.mp4}"
	tests := []struct {
		name    string
		args    []string
		outputs []string
		param   string
		want    string
	}{
		{"no input", []string{"-f", "mp4", out}, nil, "args", "the template has no {input}"},
		{"input twice", []string{"{input}", "{input}", out}, nil, "args", "{input} appears twice"},
		{"another input", []string{"{input}", "-i", "other.mp4", out}, nil, "args", "-i is not allowed: it names a second input"},
		{"url as output", []string{"{input}", "-f", "mp4", "http://example.com/x.mp4", out}, nil, "args", `"http://example.com/x.mp4" names a protocol or URL`},
		{"file protocol", []string{"{input}", "file:/etc/passwd", out}, nil, "args", `"file:/etc/passwd" names a protocol or URL`},
		{"pipe", []string{"{input}", "-f", "mp4", "pipe:1", out}, nil, "args", `"pipe:1" names a protocol or URL`},
		{"plain path", []string{"{input}", "-c", "copy", "/tmp/x.mp4", out}, nil, "args", `"/tmp/x.mp4" is not an option or an option's value`},
		{"relative path", []string{"{input}", "x.mp4", out}, nil, "args", `"x.mp4" is not an option or an option's value; outputs are written as {out:NAME}`},
		{"concat demuxer", []string{"{input}", "-f", "concat", out}, nil, "args", "-f concat is not allowed: it reads other files"},
		{"input format", []string{"-f", "concat", "{input}", out}, nil, "args", "-f before {input}: the input's format is pinned"},
		{"input option", []string{"-protocol_whitelist", "file,http", "{input}", out}, nil, "args", "-protocol_whitelist is not allowed"},
		{"other input option", []string{"-stream_loop", "3", "{input}", out}, nil, "args", "-stream_loop before {input}: only -ss, -sseof, -t and -to"},
		{"movie source", []string{"{input}", "-vf", "movie=/etc/passwd", out}, nil, "args", "-vf: filter movie is not allowed: it reads other files"},
		{"amovie in a graph", []string{"{input}", "-filter_complex", "[0:a]anull[x];amovie=a.wav[y];[x][y]amix", out}, nil, "args", "filter amovie is not allowed"},
		{"named movie", []string{"{input}", "-vf", "scale=10:10,movie@m=x.mp4", out}, nil, "args", "filter movie is not allowed"},
		{"filter script", []string{"{input}", "-filter_script:v", "graph.txt", out}, nil, "args", "-filter_script:v is not allowed: it reads the filter graph from a file"},
		{"complex script", []string{"{input}", "-filter_complex_script", "graph.txt", out}, nil, "args", "reads the filter graph from a file"},
		{"attach", []string{"{input}", "-attach", "/etc/passwd", out}, nil, "args", "-attach is not allowed: it reads a file into the output"},
		{"dump attachment", []string{"-dump_attachment:t:0", "x", "{input}", out}, nil, "args", "-dump_attachment:t:0 is not allowed"},
		{"drawtext", []string{"{input}", "-vf", "drawtext=text=hi:fontfile=/etc/passwd", out}, nil, "args", "filter drawtext is not allowed: it reads font and text files"},
		{"metadata file", []string{"{input}", "-vf", "metadata=mode=print:file=log.txt", out}, nil, "args", "filter metadata is not allowed"},
		{"sendcmd", []string{"{input}", "-lavfi", "sendcmd=f=cmds.txt", out}, nil, "args", "filter sendcmd is not allowed: it reads a command file"},
		{"unknown filter", []string{"{input}", "-vf", "scale=1:1,lensfun", out}, nil, "args", "filter lensfun is not among the filters"},
		{"paletteuse debug file", []string{"{input}", "-vf", "paletteuse=debug_kdtree=x.dot", out}, nil, "args", "option debug_kdtree names a file"},
		{"paletteuse positional file", []string{"{input}", "-vf", "paletteuse=bayer:5:rectangle:0:128:x.dot", out}, nil, "args", "paletteuse: at most five options"},
		{"escaped key", []string{"{input}", "-vf", `paletteuse=bayer:5:rectangle:0:x\=y:z`, out}, nil, "args", "paletteuse: at most five options"},
		{"file option from file", []string{"{input}", "-vf", "scale=/w=w.txt:h=10", out}, nil, "args", "option /w reads its value from a file"},
		{"quoted separator", []string{"{input}", "-vf", "scale='10:10';movie=x", out}, nil, "args", "filter movie is not allowed"},
		{"bad graph", []string{"{input}", "-vf", "scale=1:1]x", out}, nil, "args", `unexpected "]" in the filter graph`},
		{"x264 params", []string{"{input}", "-x264-params", "stats=/tmp/s", out}, nil, "args", "x264 options can name files"},
		{"two pass", []string{"{input}", "-pass", "1", out}, nil, "args", "two-pass encoding writes log files"},
		{"progress", []string{"{input}", "-progress", "http://x/", out}, nil, "args", "-progress is not allowed"},
		{"muxer option", []string{"{input}", "-hls_segment_filename", "/tmp/%d.ts", out}, nil, "args", "-hls_segment_filename is not among the options"},
		{"hls", []string{"{input}", "-f", "hls", out}, nil, "args", "-f hls is not allowed: it writes files other than its output"},
		{"tee", []string{"{input}", "-f", "tee", out}, nil, "args", "-f tee is not allowed"},
		{"unknown muxer", []string{"{input}", "-f", "rtp", out}, nil, "args", `-f "rtp" is not among the formats`},
		{"second input stream", []string{"{input}", "-map", "1:v", out}, nil, "args", `-map "1:v": maps take streams of the input`},
		{"bad codec", []string{"{input}", "-c:v", "lib x264", out}, nil, "args", `-c:v "lib x264" is not a codec name`},
		{"url value", []string{"{input}", "-metadata", "concat:a|b", out}, nil, "args", `-metadata "concat:a|b" names a protocol or URL`},
		{"undeclared output", []string{"{input}", "{out:b.mp4}"}, nil, "args", "{out:b.mp4} names an output that outputs does not declare"},
		{"output not written", []string{"{input}", out}, []string{"a.mp4", "b.mp4"}, "args", `output "b.mp4" is declared but never written`},
		{"output twice", []string{"{input}", out, out}, nil, "args", "{out:a.mp4} is written twice"},
		{"output before input", []string{out, "{input}"}, nil, "args", "{out:a.mp4} comes before {input}"},
		{"embedded placeholder", []string{"{input}", "x{out:a.mp4}", out}, nil, "args", "placeholders ({input}, {out:NAME}) stand alone"},
		{"placeholder in a value", []string{"{input}", "-metadata", "x={out:a.mp4}", out}, nil, "args", "placeholders stand alone, as whole arguments, not in option values"},
		{"engine marker", []string{"{input}", "\x00out:../../x", out}, nil, "args", "argument 2 contains a control character"},
		{"trailing option", []string{"{input}", out, "-an"}, nil, "args", "-an follows the last output"},
		{"missing value", []string{"{input}", out, "-c:v"}, nil, "args", "-c:v needs a value"},
		{"bad stream specifier", []string{"{input}", "-c:v/x", "copy", out}, nil, "args", `-c:v/x: "v/x" is not a stream specifier`},
		{"output escapes", []string{"{input}", "{out:../a.mp4}"}, []string{"../a.mp4"}, "outputs", `"../a.mp4" contains ".."`},
		{"absolute output", []string{"{input}", "{out:/a.mp4}"}, []string{"/a.mp4"}, "outputs", `"/a.mp4" is an absolute path`},
		{"pattern output", []string{"{input}", "{out:a%d.png}"}, []string{"a%d.png"}, "outputs", "has characters other than"},
		{"protocol output", []string{"{input}", "{out:a:b.mp4}"}, []string{"a:b.mp4"}, "outputs", "has characters other than"},
		{"hidden output", []string{"{input}", "{out:x/.a.mp4}"}, []string{"x/.a.mp4"}, "outputs", "is not a clean relative path"},
		{"unclean output", []string{"{input}", "{out:x//a.mp4}"}, []string{"x//a.mp4"}, "outputs", "is not a clean relative path"},
		{"duplicate output", []string{"{input}", out}, []string{"a.mp4", "a.mp4"}, "outputs", `"a.mp4" is declared twice`},
		{"too many outputs", []string{"{input}", out}, []string{"1", "2", "3", "4", "5", "6", "7", "8", "9"}, "outputs", "at most 8 items"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			outputs := tt.outputs
			if outputs == nil {
				outputs = []string{"a.mp4"}
			}
			_, err := st.Build(map[string]any{"args": anyList(tt.args), "outputs": anyList(outputs)})
			var pe *pipeline.ParamError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want a ParamError", err)
			}
			if pe.Param != tt.param || !strings.Contains(pe.Msg, tt.want) {
				t.Errorf("err = %v, want %s: ...%s...", err, tt.param, tt.want)
			}
		})
	}
}
