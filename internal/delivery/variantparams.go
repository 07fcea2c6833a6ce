package delivery

import (
	"fmt"
	"math"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/sluice-media/sluice/internal/media"
	"github.com/sluice-media/sluice/internal/pipeline"
)

// Limits bound what a variant request may ask for. Zero values take the
// defaults.
type Limits struct {
	// MaxDimension is the largest width or height; default 1920.
	MaxDimension int
	// MaxAnimationPixels bounds width x height x frames of an animation;
	// default 40,000,000 (640x360 at 30 fps for about 6 s, or 320x180 at
	// 30 fps for the full 10 s).
	MaxAnimationPixels int64
}

func (l Limits) withDefaults() Limits {
	if l.MaxDimension == 0 {
		l.MaxDimension = 1920
	}
	if l.MaxAnimationPixels == 0 {
		l.MaxAnimationPixels = 40_000_000
	}
	return l
}

// Fixed bounds and defaults of variant parameters.
const (
	minDimension        = 16
	maxQuery            = 1024
	maxAnimation        = 10.0 // seconds
	maxFPS              = 30
	defaultAnimation    = 3.0
	defaultFPS          = 10
	defaultStillWidth   = 640
	defaultAnimatedSide = 320
)

// signedParams prefixes the query parameters of a signed URL, which the
// gateway verifies; they are not variant parameters.
const signedParams = "X-Sluice-"

// ParamError is a variant parameter that is malformed, unknown, repeated
// or out of bounds: a 400 with code "invalid_parameter".
type ParamError struct {
	Param string
	Msg   string
}

func (e *ParamError) Error() string { return e.Param + ": " + e.Msg }

// VariantParams are the validated parameters of a variant request, with
// defaults filled in, before they are resolved against the video (a time
// given as a percentage needs its duration).
type VariantParams struct {
	Format string // media.FormatJPEG, FormatPNG, FormatWebP or FormatGIF
	// Time is in seconds, or a percentage of the duration when Percent;
	// unset (TimeSet false) means 2 s into the clip, or the middle of
	// shorter clips, as the thumbnail step takes.
	Time    float64
	Percent bool
	TimeSet bool
	// Width and Height are the box; one may be 0 under fit clip.
	Width, Height int
	Fit           string  // media.FitClip (default), FitCrop, FitScale or FitFill
	Duration      float64 // seconds of animation; 0 for a still
	FPS           int     // 0 for a still
}

// ParseVariantParams reads the query string of a request for the variant
// in format. Each of these may be given once:
//
//	time      seconds ("12.5" or "12.5s") or a percentage of the duration ("50%")
//	width     16 to Limits.MaxDimension
//	height    16 to Limits.MaxDimension
//	fit       clip (default: inside the box, aspect kept, never padded),
//	          crop (cover the box, crop the excess), scale (stretch to the
//	          box), fill (inside the box, padded to it); all but clip
//	          need both width and height
//	duration  seconds of animation, above 0 and at most 10 (default 3)
//	fps       frames per second of an animation, 1 to 30 (default 10)
//
// A GIF is always animated; a WebP is animated when duration or fps is
// given, and a still otherwise; JPEG and PNG are stills. Without width
// and height a still is 640 wide and an animation 320 (never upscaled).
// Parameters named X-Sluice-* belong to signed URLs and are skipped;
// anything else is an error.
func ParseVariantParams(format, rawQuery string, lim Limits) (VariantParams, error) {
	lim = lim.withDefaults()
	p := VariantParams{Format: format}
	switch format {
	case media.FormatJPEG, media.FormatPNG, media.FormatWebP, media.FormatGIF:
	default:
		return p, &ParamError{Param: "format", Msg: fmt.Sprintf("%q is not one of jpg, png, webp, gif", truncate(format))}
	}
	if len(rawQuery) > maxQuery {
		return p, &ParamError{Param: "query", Msg: fmt.Sprintf("longer than %d bytes", maxQuery)}
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return p, &ParamError{Param: "query", Msg: "malformed query string"}
	}
	// In a fixed order, so that a request with several faults always
	// gets the same one reported.
	names := make([]string, 0, len(q))
	for name := range q {
		names = append(names, name)
	}
	sort.Strings(names)
	seen := map[string]bool{}
	for _, name := range names {
		if strings.HasPrefix(name, signedParams) {
			continue
		}
		vals := q[name]
		if len(vals) > 1 {
			return p, &ParamError{Param: truncate(name), Msg: "given more than once"}
		}
		val := vals[0]
		switch name {
		case "time":
			p.Time, p.Percent, err = parseTime(val)
			p.TimeSet = true
		case "width":
			p.Width, err = parseDimension(val, lim.MaxDimension)
		case "height":
			p.Height, err = parseDimension(val, lim.MaxDimension)
		case "fit":
			p.Fit = val
			if !isFit(val) {
				err = fmt.Errorf("%q is not one of crop, clip, scale, fill", truncate(val))
			}
		case "duration":
			p.Duration, err = parseDuration(val)
		case "fps":
			p.FPS, err = parseInt(val, 1, maxFPS)
		default:
			return p, &ParamError{Param: fmt.Sprintf("%q", truncate(name)), Msg: "unknown parameter (known: time, width, height, fit, duration, fps)"}
		}
		if err != nil {
			return p, &ParamError{Param: name, Msg: err.Error()}
		}
		seen[name] = true
	}

	animated := format == media.FormatGIF || (format == media.FormatWebP && (seen["duration"] || seen["fps"]))
	if !animated {
		for _, name := range []string{"duration", "fps"} {
			if seen[name] {
				return p, &ParamError{Param: name, Msg: "only .gif and .webp thumbnails are animated"}
			}
		}
	} else {
		if !seen["duration"] {
			p.Duration = defaultAnimation
		}
		if !seen["fps"] {
			p.FPS = defaultFPS
		}
	}
	if p.Fit == "" {
		p.Fit = media.FitClip
	}
	if p.Fit != media.FitClip && (p.Width == 0 || p.Height == 0) {
		return p, &ParamError{Param: "fit", Msg: p.Fit + " needs both width and height"}
	}
	if p.Width == 0 && p.Height == 0 {
		p.Width = defaultStillWidth
		if animated {
			p.Width = defaultAnimatedSide
		}
		p.Width = min(p.Width, lim.MaxDimension)
	}
	return p, nil
}

// Query is the canonical query string of p: ParseVariantParams(p.Format,
// p.Query(), lim) returns p again.
func (p VariantParams) Query() string {
	q := url.Values{}
	if p.TimeSet {
		t := strconv.FormatFloat(p.Time, 'f', -1, 64)
		if p.Percent {
			t += "%"
		}
		q.Set("time", t)
	}
	if p.Width > 0 {
		q.Set("width", strconv.Itoa(p.Width))
	}
	if p.Height > 0 {
		q.Set("height", strconv.Itoa(p.Height))
	}
	q.Set("fit", p.Fit)
	if p.Duration > 0 {
		q.Set("duration", strconv.FormatFloat(p.Duration, 'f', -1, 64))
		q.Set("fps", strconv.Itoa(p.FPS))
	}
	return q.Encode()
}

// resolve turns p into what to render from the video m describes: the
// time clamped into the clip (an animation ending inside it where it
// can), and the animation's pixel budget checked.
func (p VariantParams) resolve(m *pipeline.Media, lim Limits) (media.FrameOptions, error) {
	lim = lim.withDefaults()
	o := media.FrameOptions{
		Format: p.Format, Width: p.Width, Height: p.Height, Fit: p.Fit,
		Duration: p.Duration, FPS: p.FPS,
	}
	v := m.Video()
	dur := m.Duration
	if v.Duration > 0 {
		dur = v.Duration
	}
	switch {
	case !p.TimeSet && dur > 2:
		o.At = 2
	case !p.TimeSet:
		o.At = dur / 2
	case p.Percent:
		o.At = dur * p.Time / 100
	default:
		o.At = p.Time
	}
	// The last frame starts one frame interval before the end.
	interval := 0.04
	if v.FrameRate > 0 {
		interval = 1 / v.FrameRate
	}
	last := max(0, dur-interval)
	if o.Animated() && dur > 0 {
		o.Duration = math.Min(o.Duration, math.Max(roundMS(dur), 0.001))
		last = max(0, dur-o.Duration)
	}
	o.At = math.Floor(math.Min(o.At, last)*1000) / 1000

	if o.Animated() {
		w, h := o.Width, o.Height
		known := m.Width > 0 && m.Height > 0
		switch {
		case w > 0 && h > 0:
		case known && h == 0:
			h = int(math.Ceil(float64(w) * float64(m.Height) / float64(m.Width)))
		case known && w == 0:
			w = int(math.Ceil(float64(h) * float64(m.Width) / float64(m.Height)))
		default: // unknown shape: assume a square
			w, h = max(w, h), max(w, h)
		}
		if known && (o.Fit == media.FitClip || o.Fit == media.FitCrop) {
			// These never upscale.
			w, h = min(w, m.Width), min(h, m.Height)
		}
		if px := int64(w) * int64(h) * int64(o.Frames()); px > lim.MaxAnimationPixels {
			return o, &ParamError{Param: "animation", Msg: fmt.Sprintf(
				"%dx%d for %d frames is %d pixels, over the limit of %d; lower width, height, duration or fps",
				w, h, o.Frames(), px, lim.MaxAnimationPixels)}
		}
	}
	return o, nil
}

func isFit(s string) bool {
	switch s {
	case media.FitClip, media.FitCrop, media.FitScale, media.FitFill:
		return true
	}
	return false
}

// parseTime reads "12.5", "12.5s" or "50%".
func parseTime(s string) (t float64, percent bool, err error) {
	const msg = "must be seconds (12.5 or 12.5s) or a percentage of the duration (50%)"
	switch {
	case strings.HasSuffix(s, "%"):
		t, ok := parseDecimal(strings.TrimSuffix(s, "%"), 3)
		if !ok {
			return 0, false, fmt.Errorf("%s", msg)
		}
		if t > 100 {
			return 0, false, fmt.Errorf("a percentage must be at most 100%%")
		}
		return t, true, nil
	default:
		t, ok := parseDecimal(strings.TrimSuffix(s, "s"), 7)
		if !ok {
			return 0, false, fmt.Errorf("%s", msg)
		}
		return t, false, nil
	}
}

// parseDuration reads an animation's length: "2", "2.5" or "2.5s".
func parseDuration(s string) (float64, error) {
	d, ok := parseDecimal(strings.TrimSuffix(s, "s"), 2)
	if !ok || d <= 0 || d > maxAnimation {
		return 0, fmt.Errorf("must be seconds above 0 and at most %g", maxAnimation)
	}
	return d, nil
}

// parseDecimal reads digits with an optional fraction of up to six
// digits, no sign, exponent or other notation, and rounds to the
// millisecond. intDigits bounds the integer part.
func parseDecimal(s string, intDigits int) (float64, bool) {
	whole, frac, dot := strings.Cut(s, ".")
	if whole == "" || len(whole) > intDigits || !digits(whole) || (dot && (frac == "" || len(frac) > 6 || !digits(frac))) {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, false
	}
	// Rounding may carry into one more integer digit (9.9999 to 10).
	f = roundMS(f)
	if f >= math.Pow10(intDigits) {
		return 0, false
	}
	return f, true
}

func parseDimension(s string, maxDim int) (int, error) {
	return parseInt(s, minDimension, maxDim)
}

// parseInt reads a whole number in [lo, hi], digits only.
func parseInt(s string, lo, hi int) (int, error) {
	if s == "" || len(s) > 6 || !digits(s) {
		return 0, fmt.Errorf("must be a whole number between %d and %d", lo, hi)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("must be between %d and %d", lo, hi)
	}
	return n, nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func roundMS(f float64) float64 { return math.Round(f*1000) / 1000 }

// truncate shortens what a client sent before it is quoted back.
func truncate(s string) string {
	const limit = 32
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}
