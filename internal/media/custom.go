package media

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"unicode"

	"github.com/sluice-media/sluice/internal/pipeline"
)

// CustomType is the "ffmpeg" step type: an FFmpeg command of the
// pipeline's own, from an argument template.
func CustomType(e *Engines) pipeline.StepType {
	return pipeline.StepType{
		Name: "ffmpeg",
		Doc:  "a custom FFmpeg command from an argument template; it reads only the input and writes only its declared outputs",
		Params: []pipeline.Param{
			{Name: "args", Kind: pipeline.Strings, Required: true, MaxItems: maxCustomArgs,
				Doc: "ffmpeg's arguments: {input} once (the input, opened as every step opens it; only -ss, -sseof, -t and -to before it), then output options and {out:NAME} for each output"},
			{Name: "outputs", Kind: pipeline.Strings, Required: true, MaxItems: 8,
				Doc: "the names of the files args writes, relative paths such as clip.gif; each must be written, and nothing else may be"},
			{Name: "heavy", Kind: pipeline.Bool, Default: false,
				Doc: "an encode that takes minutes: run it on native FFmpeg when the engine is auto and in the heavy pool"},
		},
		New: func(p pipeline.Params) (pipeline.Step, error) {
			c := &Custom{Engines: e, Args: p.Strings("args"), Outputs: p.Strings("outputs"), Heavy: p.Bool("heavy")}
			if err := checkCustomOutputs(c.Outputs); err != nil {
				return nil, &pipeline.ParamError{Param: "outputs", Msg: err.Error()}
			}
			if err := checkTemplate(c.Args, c.Outputs); err != nil {
				return nil, &pipeline.ParamError{Param: "args", Msg: err.Error()}
			}
			return c, nil
		},
	}
}

// maxCustomArgs bounds the template's length.
const maxCustomArgs = 96

// Custom runs an FFmpeg command given as a template. The template is
// checked when the pipeline loads, against allowlists rather than a list
// of known dangers: options, muxers, codecs and filters that read or
// write only what the command is given. So the command reads nothing
// but the input (opened as every step opens it: the probed demuxer, the
// file protocol only, the pixel cap) and writes nothing but its declared
// outputs; no other input, protocol, file-reading filter (movie=,
// drawtext's fontfile=), script or stats file can be named.
//
// After the run every declared output must exist, and any other file
// found in the step's directory fails the step (and is deleted): the
// allowlists should make that impossible, so it means a hole in them,
// which is better seen than quietly cleaned up.
type Custom struct {
	Engines *Engines
	Args    []string // the template
	Outputs []string // declared output names
	Heavy   bool
}

var _ pipeline.Step = (*Custom)(nil)

func (*Custom) Name() string { return "ffmpeg" }

// IsHeavy puts a custom step declared heavy in the heavy pool.
func (c *Custom) IsHeavy() bool { return c.Heavy }

var _ pipeline.HeavyStep = (*Custom)(nil)

// Applies to anything the probe accepted; a pipeline's `when` narrows it.
func (*Custom) Applies(job *pipeline.Job) bool { return job.Media != nil }

func (c *Custom) Run(ctx context.Context, job *pipeline.Job) (pipeline.Result, error) {
	var args []string
	for _, a := range c.Args {
		switch {
		case a == "{input}":
			args = append(args, inputArgs(job.Media)...)
		case strings.HasPrefix(a, "{out:"):
			args = append(args, Out(strings.TrimSuffix(strings.TrimPrefix(a, "{out:"), "}")))
		default:
			args = append(args, a)
		}
	}
	for _, o := range c.Outputs {
		if err := os.MkdirAll(filepath.Join(job.Dir, filepath.Dir(filepath.FromSlash(o))), 0o755); err != nil {
			return pipeline.Result{}, err
		}
	}
	e, err := c.Engines.Pick(job.Engine, c.Heavy)
	if err != nil {
		return pipeline.Result{}, err
	}
	if err := e.FFmpeg(ctx, Command{Input: job.Input, Dir: job.Dir, Args: args}); err != nil {
		return pipeline.Result{}, err
	}
	if err := c.removeUndeclared(job.Dir); err != nil {
		return pipeline.Result{}, err
	}
	var outs []pipeline.Output
	for _, o := range c.Outputs {
		if err := nonEmpty(job.Dir, o); err != nil {
			return pipeline.Result{}, pipeline.Invalid("ffmpeg wrote no %s from this input", o)
		}
		outs = append(outs, pipeline.Output{Name: o, ContentType: contentTypeOf(o)})
	}
	return pipeline.Result{Outputs: outs}, nil
}

// removeUndeclared deletes the files in dir that are not declared
// outputs, and reports them.
func (c *Custom) removeUndeclared(dir string) error {
	var extra []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if rel = filepath.ToSlash(rel); !slices.Contains(c.Outputs, rel) {
			extra = append(extra, rel)
			return os.Remove(p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(extra) > 0 {
		return fmt.Errorf("ffmpeg step: the command wrote files it did not declare (%s); they were deleted", strings.Join(extra, ", "))
	}
	return nil
}

// contentTypes maps output extensions to content types.
var contentTypes = map[string]string{
	".mp4": "video/mp4", ".m4v": "video/mp4", ".m4a": "audio/mp4", ".mov": "video/quicktime",
	".webm": "video/webm", ".mkv": "video/x-matroska", ".mka": "audio/x-matroska",
	".ts": "video/mp2t", ".ivf": "video/x-ivf",
	".gif": "image/gif", ".png": "image/png", ".apng": "image/apng", ".jpg": "image/jpeg",
	".jpeg": "image/jpeg", ".webp": "image/webp", ".bmp": "image/bmp", ".tif": "image/tiff", ".tiff": "image/tiff",
	".mp3": "audio/mpeg", ".aac": "audio/aac", ".ogg": "audio/ogg", ".oga": "audio/ogg", ".opus": "audio/ogg",
	".wav": "audio/wav", ".flac": "audio/flac",
	".srt": "application/x-subrip", ".vtt": "text/vtt",
}

// contentTypeOf is the content type of an output, by its extension.
func contentTypeOf(name string) string {
	if t, ok := contentTypes[strings.ToLower(path.Ext(name))]; ok {
		return t
	}
	return "application/octet-stream"
}

// checkCustomOutputs accepts distinct, clean, relative names of plain
// characters: FFmpeg reads '%' in a file name as a pattern and ':' as a
// protocol, and a leading dot would hide a file.
func checkCustomOutputs(outputs []string) error {
	for i, o := range outputs {
		switch {
		case o == "":
			return fmt.Errorf("item %d is empty", i+1)
		case strings.HasPrefix(o, "/"):
			return fmt.Errorf("%q is an absolute path; outputs are relative to the step's directory", o)
		case slices.Contains(strings.Split(o, "/"), ".."):
			return fmt.Errorf("%q contains \"..\"; outputs stay in the step's directory", o)
		case len(o) > 128:
			return fmt.Errorf("%q is longer than 128 characters", o)
		case strings.Trim(o, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/") != "":
			return fmt.Errorf("%q has characters other than letters, digits, '.', '_', '-' and '/'", o)
		case !fs.ValidPath(o) || strings.Contains("/"+o, "/."):
			return fmt.Errorf("%q is not a clean relative path such as clips/short.mp4 (no empty or hidden parts)", o)
		case slices.Contains(outputs[:i], o):
			return fmt.Errorf("%q is declared twice", o)
		}
	}
	return nil
}

// optKind is how a template option's value is checked.
type optKind int

const (
	optFlag   optKind = iota // takes no value
	optValue                 // a plain value (numbers, names, flags, metadata text)
	optCodec                 // an encoder name or copy
	optMap                   // a stream of input 0 or a filter graph label
	optFormat                // a muxer from customMuxers
	optFilter                // a filter graph, checked filter by filter
)

// customOptions are the output options a template may use. Each reads
// nothing and writes nothing but into the output it belongs to.
var customOptions = map[string]optKind{
	"an": optFlag, "vn": optFlag, "sn": optFlag, "dn": optFlag, "shortest": optFlag, "y": optFlag, "n": optFlag,

	"ss": optValue, "t": optValue, "to": optValue,
	"frames": optValue, "vframes": optValue, "aframes": optValue, "r": optValue, "fpsmax": optValue, "s": optValue,
	"aspect": optValue, "pix_fmt": optValue, "fps_mode": optValue, "vsync": optValue,
	"b": optValue, "minrate": optValue, "maxrate": optValue, "bufsize": optValue,
	"crf": optValue, "qp": optValue, "q": optValue, "qscale": optValue, "qmin": optValue, "qmax": optValue,
	"global_quality": optValue, "quality": optValue, "lossless": optValue, "compression_level": optValue,
	"preset": optValue, "tune": optValue, "profile": optValue, "level": optValue,
	"g": optValue, "keyint_min": optValue, "bf": optValue, "refs": optValue, "sc_threshold": optValue,
	"force_key_frames": optValue, "deadline": optValue, "cpu-used": optValue, "row-mt": optValue,
	"ac": optValue, "ar": optValue, "sample_fmt": optValue, "channel_layout": optValue,
	"movflags": optValue, "map_metadata": optValue, "map_chapters": optValue, "metadata": optValue,
	"disposition": optValue, "loop": optValue, "final_delay": optValue, "update": optValue,
	"tag": optValue, "brand": optValue, "strict": optValue, "flags": optValue, "fflags": optValue,
	"threads": optValue, "max_muxing_queue_size": optValue,

	"c": optCodec, "codec": optCodec, "vcodec": optCodec, "acodec": optCodec, "scodec": optCodec,
	"map": optMap,
	"f":   optFormat,
	"vf":  optFilter, "af": optFilter, "filter": optFilter, "filter_complex": optFilter, "lavfi": optFilter,
}

// inputOptions may come before {input}.
var inputOptions = []string{"ss", "sseof", "t", "to"}

// refusedOptions are options a template may not use, each with why, for
// a clearer error than "not allowed".
var refusedOptions = map[string]string{
	"i":                     "names a second input; the command's only input is {input}",
	"filter_script":         "reads the filter graph from a file",
	"filter_complex_script": "reads the filter graph from a file",
	"attach":                "reads a file into the output",
	"dump_attachment":       "writes files other than the outputs",
	"pass":                  "two-pass encoding writes log files",
	"passlogfile":           "writes log files",
	"vstats":                "writes a statistics file",
	"vstats_file":           "writes a statistics file",
	"progress":              "writes progress to a URL",
	"report":                "writes a report file",
	"sdp_file":              "writes an SDP file",
	"x264-params":           "x264 options can name files",
	"x264opts":              "x264 options can name files",
	"x265-params":           "x265 options can name files",
	"protocol_whitelist":    "would change how the input is opened (the file protocol only)",
	"format_whitelist":      "would change the input's format, which the probe pinned",
	"max_pixels":            "would change the pixel cap",
}

// customMuxers are the output formats a template may ask for: each
// writes the one file it is given.
var customMuxers = []string{
	"mp4", "mov", "ipod", "webm", "matroska", "mpegts", "ivf",
	"gif", "apng", "webp", "image2",
	"mp3", "adts", "ogg", "opus", "wav", "flac",
}

// refusedMuxers explain the muxers most likely asked for that are not
// allowed.
var refusedMuxers = map[string]string{
	"concat":  "reads other files",
	"hls":     "writes files other than its output (use the hls step)",
	"dash":    "writes files other than its output",
	"segment": "writes files other than its output",
	"tee":     "writes to outputs of its own",
	"lavfi":   "is an input format",
}

var (
	codecName   = regexp.MustCompile(`^[a-z0-9_]{1,32}$`)
	streamSpec  = regexp.MustCompile(`^[a-zA-Z0-9:]{1,32}$`)
	mapValue    = regexp.MustCompile(`^-?(0(:[a-zA-Z0-9:_.#]*)?|\[[a-zA-Z0-9_]{1,32}\])\??$`)
	protocolish = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)
	urlValue    = regexp.MustCompile(`(?i)^(file|pipe|fd|concat|concatf|subfile|data|cache|async|crypto|http|https|tcp|udp|tls|rtmp|rtp|rtsp|srt|ftp|sftp|unix|gopher|hls|ipfs|ipns):`)
	// optionKey is what libavutil's option parser takes for a key; an
	// option that does not start with one is positional.
	optionKey = regexp.MustCompile(`^[a-zA-Z0-9_./-]+$`)
)

// checkTemplate checks a template against the allowlists; outputs are the
// declared names, each of which it must write once.
func checkTemplate(args, outputs []string) error {
	if !slices.Contains(args, "{input}") {
		return fmt.Errorf("the template has no {input}")
	}
	seenInput := false
	written := map[string]bool{}
	lastOption := ""
	for i := 0; i < len(args); i++ {
		a := args[i]
		if strings.IndexFunc(a, unicode.IsControl) >= 0 {
			return fmt.Errorf("argument %d contains a control character", i+1)
		}
		switch {
		case a == "{input}":
			if seenInput {
				return fmt.Errorf("{input} appears twice; the command has one input")
			}
			seenInput = true
			continue
		case strings.HasPrefix(a, "{out:") && strings.HasSuffix(a, "}"):
			name := a[len("{out:") : len(a)-1]
			switch {
			case !seenInput:
				return fmt.Errorf("%s comes before {input}; outputs follow the input", a)
			case !slices.Contains(outputs, name):
				return fmt.Errorf("%s names an output that outputs does not declare", a)
			case written[name]:
				return fmt.Errorf("%s is written twice", a)
			}
			written[name] = true
			lastOption = ""
			continue
		case strings.Contains(a, "{"):
			return fmt.Errorf("%q: placeholders ({input}, {out:NAME}) stand alone, as whole arguments", a)
		case len(a) < 2 || a[0] != '-':
			if protocolish.MatchString(a) {
				return fmt.Errorf("%q names a protocol or URL; the command reads only {input} and writes only {out:NAME} files", a)
			}
			return fmt.Errorf("%q is not an option or an option's value; outputs are written as {out:NAME}", a)
		}

		name, spec, _ := strings.Cut(a[1:], ":")
		if why, ok := refusedOptions[name]; ok {
			return fmt.Errorf("%s is not allowed: it %s", a, why)
		}
		if spec != "" && !streamSpec.MatchString(spec) {
			return fmt.Errorf("%s: %q is not a stream specifier", a, spec)
		}
		kind, ok := customOptions[name]
		if !seenInput {
			if !slices.Contains(inputOptions, name) {
				if name == "f" {
					return fmt.Errorf("-f before {input}: the input's format is pinned by the probe")
				}
				return fmt.Errorf("%s before {input}: only -ss, -sseof, -t and -to may come before the input", a)
			}
			kind, ok = optValue, true
		}
		if !ok {
			return fmt.Errorf("%s is not among the options the ffmpeg step allows (%s)", a, allowedOptionList())
		}
		lastOption = a
		if kind == optFlag {
			continue
		}
		if i+1 >= len(args) {
			return fmt.Errorf("%s needs a value", a)
		}
		i++
		v := args[i]
		if strings.IndexFunc(v, unicode.IsControl) >= 0 {
			return fmt.Errorf("argument %d contains a control character", i+1)
		}
		if strings.Contains(v, "{input}") || strings.Contains(v, "{out:") {
			return fmt.Errorf("%s %q: placeholders stand alone, as whole arguments, not in option values", a, v)
		}
		if err := checkOptionValue(a, kind, v); err != nil {
			return err
		}
	}
	for _, o := range outputs {
		if !written[o] {
			return fmt.Errorf("output %q is declared but never written: add {out:%s} where it goes", o, o)
		}
	}
	if lastOption != "" {
		return fmt.Errorf("%s follows the last output, where it has no effect", lastOption)
	}
	return nil
}

// checkOptionValue checks the value v of option opt.
func checkOptionValue(opt string, kind optKind, v string) error {
	switch kind {
	case optCodec:
		if !codecName.MatchString(v) {
			return fmt.Errorf("%s %q is not a codec name", opt, v)
		}
	case optMap:
		if !mapValue.MatchString(v) {
			return fmt.Errorf("%s %q: maps take streams of the input (0, 0:v:0, 0:a?) or graph labels ([v])", opt, v)
		}
	case optFormat:
		if why, ok := refusedMuxers[v]; ok {
			return fmt.Errorf("%s %s is not allowed: it %s", opt, v, why)
		}
		if !slices.Contains(customMuxers, v) {
			return fmt.Errorf("%s %q is not among the formats the ffmpeg step allows (%s)", opt, v, strings.Join(customMuxers, ", "))
		}
	case optFilter:
		if err := checkFilterGraph(v); err != nil {
			return fmt.Errorf("%s: %w", opt, err)
		}
	case optValue:
		// No allowed option opens its value, but a URL here is a sign
		// of a template that means to.
		if urlValue.MatchString(v) {
			return fmt.Errorf("%s %q names a protocol or URL; the command reads only {input}", opt, v)
		}
	}
	return nil
}

func allowedOptionList() string {
	var names []string
	for n := range customOptions {
		names = append(names, "-"+n)
	}
	slices.Sort(names)
	return strings.Join(names, " ")
}

// customFilters are the filters a template's graphs may use: each works
// on the frames it is given, and none has an option that names a file
// (paletteuse's debug_kdtree is refused by name).
var customFilters = []string{
	// video
	"alphaextract", "alphamerge", "blend", "boxblur", "bwdif", "chromakey", "colorbalance",
	"colorchannelmixer", "colorkey", "colorspace", "crop", "deband", "deflicker", "drawbox",
	"drawgrid", "edgedetect", "eq", "fade", "fieldorder", "fillborders", "format", "fps",
	"framestep", "gblur", "geq", "hflip", "hqdn3d", "hstack", "hue", "interlace", "lut",
	"lutrgb", "lutyuv", "minterpolate", "mpdecimate", "negate", "noise", "null", "overlay",
	"pad", "palettegen", "paletteuse", "premultiply", "reverse", "rotate", "scale",
	"select", "setdar", "setfield", "setparams", "setpts", "setsar", "smartblur", "split",
	"tblend", "thumbnail", "tile", "tpad", "transpose", "trim", "unpremultiply", "unsharp",
	"vflip", "vignette", "vstack", "xfade", "xstack", "yadif", "zoompan", "copy", "loop",
	"concat", "sidedata",
	// audio
	"acompressor", "acrossfade", "adelay", "aecho", "afade", "aformat", "aloop", "amerge",
	"amix", "anull", "apad", "areverse", "aresample", "aselect", "asetpts", "asplit",
	"atempo", "atrim", "bandpass", "bass", "channelsplit", "dynaudnorm", "equalizer",
	"highpass", "loudnorm", "lowpass", "pan", "silenceremove", "treble", "volume",
	// audio to video
	"showwaves", "showwavespic", "showspectrum", "showspectrumpic", "avectorscope",
	// generated sources
	"color", "nullsrc", "testsrc", "testsrc2", "smptebars", "anullsrc", "sine",
}

// refusedFilters explain the filters most likely asked for that are not
// allowed.
var refusedFilters = map[string]string{
	"movie":     "reads other files",
	"amovie":    "reads other files",
	"subtitles": "reads other files",
	"ass":       "reads other files",
	"drawtext":  "reads font and text files (use the watermark step)",
	"metadata":  "can write a file",
	"ametadata": "can write a file",
	"sendcmd":   "reads a command file",
	"asendcmd":  "reads a command file",
	"lut3d":     "reads a file",
	"haldclut":  "takes a second input",
	"frei0r":    "loads a plugin",
	"ladspa":    "loads a plugin",
	"lv2":       "loads a plugin",
	"zmq":       "listens on the network",
	"azmq":      "listens on the network",
}

// filterName is a filter's name, with an optional @instance.
var filterName = regexp.MustCompile(`^[a-z0-9_]{1,32}(@[a-zA-Z0-9_]{1,32})?$`)

// checkFilterGraph checks each filter of a graph (chains separated by
// ';', filters by ',', each [label]s, a name and =options) against
// customFilters. It reads the graph as libavfilter does: quotes and
// backslashes protect separators within options.
func checkFilterGraph(g string) error {
	if len(g) > 4096 {
		return fmt.Errorf("filter graph longer than 4096 characters")
	}
	rest := g
	for {
		rest = strings.TrimLeft(rest, " \t\n\r")
		// input labels
		var err error
		if rest, err = skipLabels(rest); err != nil {
			return err
		}
		n := strings.IndexAny(rest, "=,;[ \t\n\r")
		if n < 0 {
			n = len(rest)
		}
		name := rest[:n]
		rest = rest[n:]
		if !filterName.MatchString(name) {
			return fmt.Errorf("%q is not a filter name", name)
		}
		base, _, _ := strings.Cut(name, "@")
		if why, ok := refusedFilters[base]; ok {
			return fmt.Errorf("filter %s is not allowed: it %s", base, why)
		}
		if !slices.Contains(customFilters, base) {
			return fmt.Errorf("filter %s is not among the filters the ffmpeg step allows (%s)", base, strings.Join(customFilters, ", "))
		}
		if strings.HasPrefix(rest, "=") {
			var opts string
			opts, rest = filterOptions(rest[1:])
			if err := checkFilterOptions(base, opts); err != nil {
				return err
			}
		}
		rest = strings.TrimLeft(rest, " \t\n\r")
		if rest, err = skipLabels(rest); err != nil {
			return err
		}
		rest = strings.TrimLeft(rest, " \t\n\r")
		if rest == "" {
			return nil
		}
		if rest[0] != ',' && rest[0] != ';' {
			return fmt.Errorf("unexpected %q in the filter graph", rest[:1])
		}
		rest = rest[1:]
	}
}

// skipLabels skips [label]s.
func skipLabels(s string) (string, error) {
	for strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", fmt.Errorf("unterminated label in the filter graph")
		}
		s = strings.TrimLeft(s[end+1:], " \t\n\r")
	}
	return s, nil
}

// filterOptions splits off a filter's options, up to an unquoted,
// unescaped one of "[],;", as av_get_token reads them; the options are
// returned unescaped once, as the option parser then sees them.
func filterOptions(s string) (opts, rest string) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && i+1 < len(s):
			i++
			b.WriteByte(s[i])
		case c == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				b.WriteString(s[i+1:])
				return b.String(), ""
			}
			b.WriteString(s[i+1 : i+1+end])
			i += end + 1
		case strings.IndexByte("[],;", c) >= 0:
			return b.String(), s[i:]
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), ""
}

// fileOptions are filter option names that name files.
var fileOptions = []string{"filename", "file", "f", "fontfile", "textfile", "psfile", "debug_kdtree", "stats_file", "log_path", "model"}

// checkFilterOptions refuses options that name files: by name, or by
// position for paletteuse, whose sixth and last option is one.
func checkFilterOptions(filter, opts string) error {
	parts := splitUnescaped(opts, ':')
	if filter == "paletteuse" && len(parts) > 5 {
		return fmt.Errorf("filter paletteuse: at most five options (its sixth writes a file)")
	}
	for _, o := range parts {
		key, _, named := strings.Cut(o, "=")
		// Keys may have spaces around them, as libavutil reads them.
		if key = strings.TrimSpace(key); !named || !optionKey.MatchString(key) {
			continue // positional
		}
		if strings.HasPrefix(key, "/") {
			return fmt.Errorf("filter %s: option %s reads its value from a file", filter, key)
		}
		if slices.Contains(fileOptions, key) {
			return fmt.Errorf("filter %s: option %s names a file", filter, key)
		}
	}
	return nil
}

// splitUnescaped splits s at sep, except where quoted or escaped, and
// leaves the parts as they are.
func splitUnescaped(s string, sep byte) []string {
	var parts []string
	start, quoted := 0, false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '\'':
			quoted = !quoted
		case sep:
			if !quoted {
				parts = append(parts, s[start:i])
				start = i + 1
			}
		}
	}
	return append(parts, s[start:])
}
