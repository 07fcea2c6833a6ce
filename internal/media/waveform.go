package media

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/sluice-media/sluice/internal/pipeline"
)

// Output names of the waveform step.
const (
	WaveformJSON = "waveform.json"
	WaveformPNG  = "waveform.png"
)

// WaveformRate is the sample rate, in Hz, audio is decoded at for the
// waveform: mono 16-bit at 8 kHz is 16 KB a second, so that even hours of
// audio make a raw file of modest size, and still a sample every 125 µs,
// far finer than any waveform is drawn.
const WaveformRate = 8000

// MaxWaveformLength caps the number of min/max pairs in waveform.json;
// longer inputs get more samples per pair.
const MaxWaveformLength = 1 << 21

// WaveformType is the "waveform" step type.
func WaveformType(e *Engines) pipeline.StepType {
	return pipeline.StepType{
		Name: "waveform",
		Doc:  "peaks of the first audio track as audiowaveform JSON (peaks.js, wavesurfer) and a PNG",
		Params: []pipeline.Param{
			{Name: "points", Kind: pipeline.Int, Default: 1000, Min: 10, Max: 100000, Doc: "min/max pairs over the whole duration"},
			{Name: "per_second", Kind: pipeline.Int, Min: 1, Max: 100, Doc: "min/max pairs per second of audio instead of points"},
			{Name: "bits", Kind: pipeline.Int, Default: 8, Min: 8, Max: 16, Doc: "8 or 16: the range of the JSON values"},
			{Name: "width", Kind: pipeline.Int, Default: 1000, Min: 16, Max: 8192, Doc: "PNG width in pixels"},
			{Name: "height", Kind: pipeline.Int, Default: 200, Min: 8, Max: 4096, Doc: "PNG height in pixels"},
			{Name: "colour", Kind: pipeline.String, Default: "#3b82f6", Doc: "PNG waveform colour as #rrggbb or #rrggbbaa, on a transparent background"},
		},
		New: func(p pipeline.Params) (pipeline.Step, error) {
			bits := p.Int("bits")
			if bits != 8 && bits != 16 {
				return nil, &pipeline.ParamError{Param: "bits", Msg: fmt.Sprintf("%d is neither 8 nor 16", bits)}
			}
			c, err := parseColour(p.String("colour"))
			if err != nil {
				return nil, &pipeline.ParamError{Param: "colour", Msg: err.Error()}
			}
			return &Waveform{
				Engines: e, Points: p.Int("points"), PerSecond: p.Int("per_second"), Bits: bits,
				Width: p.Int("width"), Height: p.Int("height"), Colour: c,
			}, nil
		},
	}
}

// parseColour reads #rrggbb or #rrggbbaa (the # is optional).
func parseColour(s string) (color.NRGBA, error) {
	h := strings.TrimPrefix(s, "#")
	if len(h) == 6 {
		h += "ff"
	}
	v, err := strconv.ParseUint(h, 16, 32)
	if len(h) != 8 || err != nil {
		return color.NRGBA{}, fmt.Errorf("%q is not a colour such as #3b82f6", s)
	}
	return color.NRGBA{R: uint8(v >> 24), G: uint8(v >> 16), B: uint8(v >> 8), A: uint8(v)}, nil
}

// Waveform draws the first audio track's peaks: min/max pairs as JSON in
// the format of BBC's audiowaveform, which waveform players read, and a
// PNG.
//
// FFmpeg only decodes, to mono 16-bit samples at WaveformRate in a
// scratch file (the WebAssembly engine has no stdout to stream them
// through); the peaks are computed here in one streaming pass over that
// file, for the JSON and the image together. Drawing the PNG from those
// peaks in Go, rather than with FFmpeg's showwavespic, saves a second
// decode, needs no PNG encoder in the WebAssembly build, and makes the
// picture identical whichever engine decoded.
type Waveform struct {
	Engines *Engines
	// Points is the number of min/max pairs over the whole duration;
	// PerSecond, when set, asks for pairs per second of audio instead.
	Points, PerSecond int
	Bits              int // 8 or 16
	Width, Height     int
	Colour            color.NRGBA
}

var _ pipeline.Step = (*Waveform)(nil)

// Peaks is waveform.json: audiowaveform's JSON format, version 2.
type Peaks struct {
	Version         int `json:"version"`
	Channels        int `json:"channels"`
	SampleRate      int `json:"sample_rate"`
	SamplesPerPixel int `json:"samples_per_pixel"`
	Bits            int `json:"bits"`
	Length          int `json:"length"`
	// Data holds Length pairs: min, max, min, max...
	Data []int16 `json:"data"`
}

func (*Waveform) Name() string { return "waveform" }

func (*Waveform) Applies(job *pipeline.Job) bool {
	return job.Media != nil && job.Media.Audio() != nil
}

// waveformRaw is the scratch file of decoded samples.
const waveformRaw = "waveform.s16"

func (w *Waveform) Run(ctx context.Context, job *pipeline.Job) (pipeline.Result, error) {
	w = w.withDefaults()
	e, err := w.Engines.Pick(job.Engine, false)
	if err != nil {
		return pipeline.Result{}, err
	}
	raw := filepath.Join(job.Dir, waveformRaw)
	defer os.Remove(raw)
	args := inputArgs(job.Media)
	args = append(args,
		"-map", "0:"+strconv.Itoa(job.Media.Audio().Index), "-vn", "-sn", "-dn",
		"-ac", "1", "-ar", strconv.Itoa(WaveformRate),
		"-c:a", "pcm_s16le", "-f", "s16le", Out(waveformRaw),
	)
	if err := e.FFmpeg(ctx, Command{Input: job.Input, Dir: job.Dir, Args: args}); err != nil {
		return pipeline.Result{}, err
	}
	f, err := os.Open(raw)
	if err != nil {
		return pipeline.Result{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return pipeline.Result{}, err
	}
	n := fi.Size() / 2
	if n == 0 {
		return pipeline.Result{}, pipeline.Invalid("no audio could be decoded")
	}
	peaks, cols, err := w.peaks(f, n)
	if err != nil {
		return pipeline.Result{}, fmt.Errorf("media: read decoded samples: %w", err)
	}
	if err := writeJSON(filepath.Join(job.Dir, WaveformJSON), peaks); err != nil {
		return pipeline.Result{}, err
	}
	if err := w.writePNG(filepath.Join(job.Dir, WaveformPNG), cols); err != nil {
		return pipeline.Result{}, err
	}
	return pipeline.Result{Outputs: []pipeline.Output{
		{Name: WaveformJSON, ContentType: "application/json"},
		{Name: WaveformPNG, ContentType: "image/png"},
	}}, nil
}

// withDefaults fills in what a Waveform built other than by WaveformType
// left zero.
func (w *Waveform) withDefaults() *Waveform {
	d := *w
	if d.Points <= 0 {
		d.Points = 1000
	}
	if d.Bits != 16 {
		d.Bits = 8
	}
	if d.Width <= 0 || d.Height <= 0 {
		d.Width, d.Height = 1000, 200
	}
	if d.Colour == (color.NRGBA{}) {
		d.Colour = color.NRGBA{R: 0x3b, G: 0x82, B: 0xf6, A: 0xff}
	}
	return &d
}

// samplesPerPixel is how many of n samples each JSON pair covers.
func (w *Waveform) samplesPerPixel(n int64) int64 {
	var spp int64
	if w.PerSecond > 0 {
		spp = int64(math.Round(float64(WaveformRate) / float64(w.PerSecond)))
	} else {
		points := int64(w.Points)
		spp = (n + points - 1) / points
	}
	return max(spp, 1, (n+MaxWaveformLength-1)/MaxWaveformLength)
}

// peaks reads n little-endian 16-bit samples from r, in one pass, into
// the JSON pairs and one min/max pair per image column.
func (w *Waveform) peaks(r io.Reader, n int64) (*Peaks, []int16, error) {
	spp := w.samplesPerPixel(n)
	length := int((n + spp - 1) / spp)
	data := make([]int16, 2*length)
	cols := make([]int16, 2*w.Width)
	seen := make([]bool, w.Width)
	buf := make([]byte, 64<<10)
	for i := int64(0); i < n; {
		chunk := buf[:min(int64(len(buf)), 2*(n-i))]
		if _, err := io.ReadFull(r, chunk); err != nil {
			return nil, nil, err
		}
		for k := 0; k < len(chunk); k, i = k+2, i+1 {
			s := int16(uint16(chunk[k]) | uint16(chunk[k+1])<<8)
			j := 2 * (i / spp)
			if i%spp == 0 {
				data[j], data[j+1] = s, s
			} else {
				data[j], data[j+1] = min(data[j], s), max(data[j+1], s)
			}
			c := int(i * int64(w.Width) / n)
			if !seen[c] {
				seen[c] = true
				cols[2*c], cols[2*c+1] = s, s
			} else {
				cols[2*c], cols[2*c+1] = min(cols[2*c], s), max(cols[2*c+1], s)
			}
		}
	}
	// Fewer samples than columns: a column with none repeats its left
	// neighbour (column 0 always has one).
	for c := 1; c < w.Width; c++ {
		if !seen[c] {
			cols[2*c], cols[2*c+1] = cols[2*c-2], cols[2*c-1]
		}
	}
	if w.Bits == 8 {
		for i, v := range data {
			data[i] = v >> 8
		}
	}
	return &Peaks{
		Version: 2, Channels: 1, SampleRate: WaveformRate, SamplesPerPixel: int(spp),
		Bits: w.Bits, Length: length, Data: data,
	}, cols, nil
}

// writePNG draws one vertical line per column, from its min to its max,
// full scale reaching the edges.
func (w *Waveform) writePNG(path string, cols []int16) error {
	img := image.NewPaletted(image.Rect(0, 0, w.Width, w.Height), color.Palette{color.NRGBA{}, w.Colour})
	// Rows from the top; silence is the middle row, or the middle two of
	// an even height.
	mid := float64(w.Height-1) / 2
	y := func(v int16) float64 { return mid - float64(v)/32768*mid }
	for c := range w.Width {
		top, bottom := int(math.Floor(y(cols[2*c+1]))), int(math.Ceil(y(cols[2*c])))
		for row := top; row <= bottom; row++ {
			img.SetColorIndex(c, row, 1)
		}
	}
	return writeFile(path, func(f io.Writer) error { return png.Encode(f, img) })
}

// writeJSON writes v as JSON to path.
func writeJSON(path string, v any) error {
	return writeFile(path, func(f io.Writer) error { return json.NewEncoder(f).Encode(v) })
}

// writeFile creates path and writes it through a buffer with write.
func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	err = write(bw)
	if err == nil {
		err = bw.Flush()
	}
	return errors.Join(err, f.Close())
}
