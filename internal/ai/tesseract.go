package ai

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Tesseract reads text in images with the tesseract command (Debian's
// tesseract-ocr, plus a tesseract-ocr-LANG package per language). Each
// call runs one child process, image on stdin and TSV on stdout, in its
// own process group that is killed when the call's context ends, with an
// empty environment but for TESSDATA_PREFIX (when set here) and
// OMP_THREAD_LIMIT=1: the gateway runs several OCR calls at once, and
// Tesseract's OpenMP threads would otherwise compete for the same cores
// and make each call slower.
type Tesseract struct {
	name    string
	command string
	langs   []string

	// started, when set (by tests), is told the pid of each OCR child.
	started func(pid int)

	mu       sync.Mutex
	probed   *tesseractProbe // the last successful probe; kept
	probeErr error           // the last failed probe, until probeAt+tesseractRecheck
	probeAt  time.Time
}

var (
	_ Provider = (*Tesseract)(nil)
	_ Reader   = (*Tesseract)(nil)
)

// tesseractProbe is what `tesseract --version` and `--list-langs` said.
type tesseractProbe struct {
	path    string
	version string
	langs   []string
}

const (
	// tesseractRecheck is how long a failed probe (tool missing) stands
	// before Available runs the tool again, so that a job per second
	// does not fork a missing binary each time, yet an install is seen
	// without a restart.
	tesseractRecheck = 30 * time.Second
	// tesseractProbeTimeout bounds --version and --list-langs.
	tesseractProbeTimeout = 10 * time.Second
	// tesseractMaxOutput bounds the TSV read back: a page of dense text
	// is about 100 KB.
	tesseractMaxOutput = 8 << 20
	// tesseractPSM is Tesseract's page segmentation mode 3, fully
	// automatic: it finds blocks of text anywhere in a frame.
	tesseractPSM = "3"
)

// tesseractLang is a traineddata name: "eng", "chi_sim", "deu_latf".
var tesseractLang = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,31}$`)

// NewTesseract returns the OCR provider that runs pc.Command (default
// "tesseract", looked up in PATH) with the languages pc.Languages
// (default English) when a request names none. It does not run the tool;
// Available does.
func NewTesseract(pc ProviderConfig) (*Tesseract, error) {
	t := &Tesseract{name: pc.Name, command: pc.Command, langs: slices.Clone(pc.Languages)}
	if t.name == "" {
		t.name = "tesseract"
	}
	if t.command == "" {
		t.command = "tesseract"
	}
	if len(t.langs) == 0 {
		t.langs = []string{"eng"}
	}
	for _, l := range t.langs {
		if !tesseractLang.MatchString(l) {
			return nil, fmt.Errorf("ai: tesseract %q: bad language code %q", t.name, l)
		}
	}
	// A model named for OCR is ignored: the model is the installed
	// Tesseract and its language data.
	for task := range pc.Models {
		if task != TaskOCR {
			return nil, fmt.Errorf("ai: tesseract %q: it does OCR only, not %s", t.name, task)
		}
	}
	return t, nil
}

// Name implements Provider.
func (t *Tesseract) Name() string { return t.name }

// Model implements Provider: "tesseract-" and the installed version for
// OCR, so that an upgrade of Tesseract misses results cached by the old
// one. It runs the tool once if Available has not.
func (t *Tesseract) Model(task Task) string {
	if task != TaskOCR {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), tesseractProbeTimeout)
	defer cancel()
	if p, err := t.probe(ctx); err == nil {
		return "tesseract-" + p.version
	}
	return "tesseract"
}

// Available implements Provider: nil when the tool runs and the default
// languages' data is installed. Success is remembered; a failure is for
// tesseractRecheck.
func (t *Tesseract) Available(ctx context.Context) error {
	p, err := t.probe(ctx)
	if err != nil {
		return err
	}
	return t.checkLangs(p, t.langs)
}

func (t *Tesseract) checkLangs(p *tesseractProbe, langs []string) error {
	var missing []string
	for _, l := range langs {
		if !slices.Contains(p.langs, l) {
			missing = append(missing, l)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	pkgs := make([]string, len(missing))
	for i, l := range missing {
		pkgs[i] = "tesseract-ocr-" + strings.ReplaceAll(strings.ToLower(l), "_", "-")
	}
	return fmt.Errorf("%w: %s: no Tesseract language data for %s (installed: %s); install %s",
		ErrUnavailable, t.name, strings.Join(missing, ", "), strings.Join(p.langs, ", "), strings.Join(pkgs, " "))
}

func (t *Tesseract) probe(ctx context.Context) (*tesseractProbe, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.probed != nil {
		return t.probed, nil
	}
	if t.probeErr != nil && time.Since(t.probeAt) < tesseractRecheck {
		return nil, t.probeErr
	}
	p, err := t.runProbe(ctx)
	if err != nil {
		if ctx.Err() == nil { // a caller's timeout says nothing about the tool
			t.probeErr, t.probeAt = err, time.Now()
		}
		return nil, err
	}
	t.probed, t.probeErr = p, nil
	return p, nil
}

func (t *Tesseract) runProbe(ctx context.Context) (*tesseractProbe, error) {
	path, err := exec.LookPath(t.command)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: tesseract not found (%q): install tesseract-ocr and tesseract-ocr-eng (bash scripts/ai-deps.sh)",
			ErrUnavailable, t.name, t.command)
	}
	ctx, cancel := context.WithTimeout(ctx, tesseractProbeTimeout)
	defer cancel()
	var out, errOut localTail
	out.max, errOut.max = 64<<10, 4<<10
	if err := runLocal(ctx, path, []string{"--version"}, tesseractEnv(), nil, &out, &errOut, nil); err != nil {
		return nil, fmt.Errorf("%w: %s: %s --version: %v: %s", ErrUnavailable, t.name, path, err, errOut.String())
	}
	// "tesseract 5.3.0" (4.x printed it on stderr).
	var version string
	for _, s := range []string{out.String(), errOut.String()} {
		if f := strings.Fields(s); len(f) >= 2 && f[0] == "tesseract" {
			version = strings.TrimPrefix(f[1], "v")
			break
		}
	}
	if version == "" {
		return nil, fmt.Errorf("%w: %s: %s does not look like tesseract (--version said %q)",
			ErrUnavailable, t.name, path, localFirstLine(out.String()+errOut.String()))
	}
	out.Reset()
	errOut.Reset()
	if err := runLocal(ctx, path, []string{"--list-langs"}, tesseractEnv(), nil, &out, &errOut, nil); err != nil {
		return nil, fmt.Errorf("%w: %s: %s --list-langs: %v: %s", ErrUnavailable, t.name, path, err, errOut.String())
	}
	// A heading line, then one language per line.
	var langs []string
	sc := bufio.NewScanner(strings.NewReader(out.String()))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); tesseractLang.MatchString(l) {
			langs = append(langs, l)
		}
	}
	return &tesseractProbe{path: path, version: version, langs: langs}, nil
}

// OCR implements Reader. The image must be PNG, JPEG, GIF, BMP, TIFF or
// WebP: anything else is refused before Tesseract runs, because Tesseract
// reads input it cannot decode as an image as a list of file names to
// OCR, which would let an upload read files on this machine.
func (t *Tesseract) OCR(ctx context.Context, req OCRRequest) (OCRResult, Usage, error) {
	p, err := t.probe(ctx)
	if err != nil {
		return OCRResult{}, Usage{}, err
	}
	langs := req.Languages
	if len(langs) == 0 {
		langs = t.langs
	}
	for _, l := range langs {
		if !tesseractLang.MatchString(l) {
			return OCRResult{}, Usage{}, &ProviderError{Provider: t.name, Code: "invalid_language", Message: fmt.Sprintf("bad language code %q", l)}
		}
	}
	if err := t.checkLangs(p, langs); err != nil {
		return OCRResult{}, Usage{}, err
	}
	if format := localImageFormat(req.Image.Data); format == "" {
		return OCRResult{}, Usage{}, &ProviderError{Provider: t.name, Code: "invalid_image",
			Message: fmt.Sprintf("not an image Tesseract reads (PNG, JPEG, GIF, BMP, TIFF, WebP): %d bytes starting %q", len(req.Image.Data), localHead(req.Image.Data, 8))}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var out, errOut localTail
	out.max, out.overflow = tesseractMaxOutput, cancel
	errOut.max = 4 << 10
	args := []string{"stdin", "stdout", "-l", strings.Join(langs, "+"), "--psm", tesseractPSM, "tsv"}
	runErr := runLocal(ctx, p.path, args, tesseractEnv(), bytes.NewReader(req.Image.Data), &out, &errOut, t.started)
	switch {
	case out.overflowed:
		return OCRResult{}, Usage{}, &ProviderError{Provider: t.name, Code: "output_too_large",
			Message: fmt.Sprintf("tesseract wrote more than %d bytes", tesseractMaxOutput)}
	case runErr != nil && ctx.Err() != nil:
		pe := &ProviderError{Provider: t.name, Code: "timeout", Message: "tesseract did not finish: " + ctx.Err().Error(),
			Temporary: errors.Is(ctx.Err(), context.DeadlineExceeded)}
		return OCRResult{}, Usage{}, fmt.Errorf("%w (%w)", pe, ctx.Err())
	case runErr != nil:
		return OCRResult{}, Usage{}, &ProviderError{Provider: t.name, Code: "tesseract_failed",
			Message: fmt.Sprintf("%v: %s", runErr, strings.TrimSpace(errOut.String()))}
	}
	res, err := parseTesseractTSV(out.String())
	if err != nil {
		return OCRResult{}, Usage{}, &ProviderError{Provider: t.name, Code: "bad_output", Message: err.Error()}
	}
	return res, Usage{Images: 1}, nil
}

// parseTesseractTSV turns Tesseract's TSV (one row per page, block,
// paragraph, line and word, words at level 5) into lines of words, each
// with the mean of its words' confidences.
func parseTesseractTSV(tsv string) (OCRResult, error) {
	rows := strings.Split(strings.TrimRight(tsv, "\n"), "\n")
	if len(rows) == 0 || !strings.HasPrefix(rows[0], "level\t") {
		return OCRResult{}, fmt.Errorf("tesseract output is not TSV: %q", localFirstLine(tsv))
	}
	col := map[string]int{}
	for i, h := range strings.Split(rows[0], "\t") {
		col[strings.TrimSpace(h)] = i
	}
	need := []string{"level", "page_num", "block_num", "par_num", "line_num", "conf", "text"}
	for _, n := range need {
		if _, ok := col[n]; !ok {
			return OCRResult{}, fmt.Errorf("tesseract TSV has no %q column", n)
		}
	}
	type line struct {
		words []string
		conf  float64
	}
	var order []string
	lines := map[string]*line{}
	for _, r := range rows[1:] {
		f := strings.Split(r, "\t")
		if len(f) <= col["text"] || f[col["level"]] != "5" {
			continue
		}
		word := strings.TrimSpace(f[col["text"]])
		conf, err := strconv.ParseFloat(f[col["conf"]], 64)
		if word == "" || err != nil || conf < 0 {
			continue
		}
		key := f[col["page_num"]] + "/" + f[col["block_num"]] + "/" + f[col["par_num"]] + "/" + f[col["line_num"]]
		l := lines[key]
		if l == nil {
			l = &line{}
			lines[key] = l
			order = append(order, key)
		}
		l.words = append(l.words, word)
		l.conf += conf
	}
	res := OCRResult{Lines: make([]OCRLine, 0, len(order))}
	texts := make([]string, 0, len(order))
	for _, k := range order {
		l := lines[k]
		text := strings.Join(l.words, " ")
		conf := math.Min(1, math.Max(0, l.conf/float64(len(l.words))/100))
		res.Lines = append(res.Lines, OCRLine{Text: text, Confidence: conf})
		texts = append(texts, text)
	}
	res.Text = strings.Join(texts, "\n")
	return res, nil
}

func tesseractEnv() []string {
	env := []string{"OMP_THREAD_LIMIT=1"}
	if v, ok := os.LookupEnv("TESSDATA_PREFIX"); ok {
		env = append(env, "TESSDATA_PREFIX="+v)
	}
	return env
}

// localImageFormat names the image format of data by its magic bytes, or ""
// for anything else.
func localImageFormat(data []byte) string {
	switch {
	case bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")):
		return "png"
	case bytes.HasPrefix(data, []byte{0xff, 0xd8, 0xff}):
		return "jpeg"
	case bytes.HasPrefix(data, []byte("GIF87a")), bytes.HasPrefix(data, []byte("GIF89a")):
		return "gif"
	case bytes.HasPrefix(data, []byte("BM")) && len(data) > 26:
		return "bmp"
	case bytes.HasPrefix(data, []byte("II*\x00")), bytes.HasPrefix(data, []byte("MM\x00*")):
		return "tiff"
	case len(data) >= 12 && bytes.HasPrefix(data, []byte("RIFF")) && string(data[8:12]) == "WEBP":
		return "webp"
	}
	return ""
}

// runLocal runs path with args in its own process group, with env as its
// whole environment, and waits for it. When ctx ends, the whole group is
// killed (a wrapper script's children too). started, if set, is given
// the child's pid once it runs.
func runLocal(ctx context.Context, path string, args, env []string, stdin *bytes.Reader, stdout, stderr *localTail, started func(int)) error {
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = env
	if stdin != nil {
		cmd.Stdin = stdin
	}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error {
		// Negative pid: the group. The leader is not reaped yet (Wait is
		// what returns after Cancel), so its group id is still ours.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	// Pipes held open by a grandchild must not hold Wait past the kill.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return err
	}
	if started != nil {
		started(cmd.Process.Pid)
	}
	return cmd.Wait()
}

// localTail is an io.Writer that keeps what a child process wrote, up to
// max bytes: the first max when overflow is set (which it calls once,
// to stop the child), else the last max.
type localTail struct {
	mu         sync.Mutex
	buf        []byte
	max        int
	overflow   func()
	overflowed bool
}

func (w *localTail) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	if w.overflow != nil {
		if len(w.buf)+len(p) > w.max {
			if !w.overflowed {
				w.overflowed = true
				w.overflow()
			}
			return n, nil
		}
		w.buf = append(w.buf, p...)
		return n, nil
	}
	w.buf = append(w.buf, p...)
	if len(w.buf) > w.max {
		w.buf = append(w.buf[:0], w.buf[len(w.buf)-w.max:]...)
	}
	return n, nil
}

func (w *localTail) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.buf)
}

func (w *localTail) Reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf, w.overflowed = w.buf[:0], false
}

func localFirstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

func localHead(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
