package aitest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// WorkersAIOptions set up a fake Workers AI API.
type WorkersAIOptions struct {
	// APIKey, when set, is the bearer token every call must carry;
	// others get 401 with Cloudflare's code 10000.
	APIKey string
	// EchoKey makes 401 answers quote the token presented.
	EchoKey bool
	// AccountID is the account calls must name in their path (default
	// DefaultAccountID).
	AccountID string
	// Transcript is what the Whisper models hear (default
	// SampleTranscript).
	Transcript *Transcript
	// Labels are what image classifiers see (default SampleLabels);
	// they are reported upper-case, as ResNet-50's ImageNet classes are.
	Labels []Label
	// Description and Summary are what vision and text models answer
	// (defaults SampleDescription, SampleSummary).
	Description string
	Summary     string
}

// DefaultAccountID is the account a fake Workers AI serves by default.
const DefaultAccountID = "023e105f4ecef8ad9ca31a8372d0c353"

// WorkersAI is a fake Cloudflare API at URL + "/client/v4" serving POST
// /accounts/{account}/ai/run/{model} for these models:
//
//   - @cf/openai/whisper, @cf/openai/whisper-tiny-en: the raw audio file
//     as the body, or {"audio": [bytes]}; text, word_count, words, vtt.
//   - @cf/openai/whisper-large-v3-turbo: {"audio": base64, "language",
//     "initial_prompt", ...}; transcription_info, text, word_count,
//     segments with words, vtt.
//   - @cf/microsoft/resnet-50: the raw image, or {"image": [bytes]};
//     [{label, score}].
//   - @cf/llava-hf/llava-1.5-7b-hf, @cf/unum/uform-gen2-qwen-500m:
//     {"image": [bytes], "prompt", "max_tokens"}; {description}.
//   - @cf/meta/llama-3.2-11b-vision-instruct: {"prompt" or "messages",
//     "image": [bytes] or base64}; {response, usage}.
//   - other @cf/meta/llama-* and @cf/mistral/* models: {"messages"} or
//     {"prompt"}; {response, tool_calls, usage}.
//
// Results come in Cloudflare's envelope
// {"result","success","errors":[{"code","message"}],"messages"}; an
// unknown model gets code 5007, bad input 5004 or 3003, as the service's
// documented errors.
type WorkersAI struct {
	*httptest.Server
	*core
	opts WorkersAIOptions
}

// NewWorkersAI starts a fake Workers AI API, closed when the test ends.
func NewWorkersAI(t testing.TB, opts WorkersAIOptions) *WorkersAI {
	if opts.AccountID == "" {
		opts.AccountID = DefaultAccountID
	}
	s := &WorkersAI{core: newCore(t), opts: opts}
	s.errorReply = cfError
	s.auth = s.checkAuth
	mux := http.NewServeMux()
	model := func(r *http.Request) string { return r.PathValue("model") }
	mux.HandleFunc("POST /client/v4/accounts/{account}/ai/run/{model...}", s.handle(model, s.run))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		rep := cfErrors(http.StatusBadRequest, cfErr{7003, "Could not route to " + r.URL.Path + ", perhaps your object identifier is invalid?"}, cfErr{7000, "No route for that URI"})
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rep.status)
		w.Write(rep.body)
	})
	s.Server = s.start(mux)
	return s
}

// BaseURL is the base URL a provider is configured with.
func (s *WorkersAI) BaseURL() string { return s.URL + "/client/v4" }

func (s *WorkersAI) checkAuth(r *http.Request) *reply {
	if s.opts.APIKey == "" {
		return nil
	}
	token, ok := bearer(r, s.opts.APIKey)
	if ok {
		return nil
	}
	msg := "Authentication error"
	if s.opts.EchoKey && token != "" {
		msg += ": invalid token " + token
	}
	rep := cfErrors(http.StatusUnauthorized, cfErr{10000, msg})
	return &rep
}

type cfErr struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// cfError renders Cloudflare's failure envelope for a fault, with the
// Workers AI code and message documented for the status when none are
// given.
func cfError(status int, code, message string) reply {
	n, err := strconv.Atoi(code)
	if code == "" || err != nil {
		switch status {
		case http.StatusTooManyRequests:
			n = 3040
		case http.StatusRequestTimeout:
			n = 3007
		case http.StatusRequestEntityTooLarge:
			n = 3006
		case http.StatusUnauthorized, http.StatusForbidden:
			n = 10000
		case http.StatusBadRequest:
			n = 5007
		default:
			// No documented code: the status stands in.
			n = status
		}
	}
	if message == "" {
		message = map[int]string{
			3040:  "No more data centers to forward the request to",
			3007:  "Request timeout",
			3006:  "Request is too large",
			10000: "Authentication error",
			5007:  "No such model or task",
		}[n]
	}
	if message == "" {
		message = "AiError: " + http.StatusText(status)
	}
	return cfErrors(status, cfErr{n, message})
}

func cfErrors(status int, errs ...cfErr) reply {
	return jsonReply(status, map[string]any{"result": nil, "success": false, "errors": errs, "messages": []any{}})
}

func cfResult(result any) reply {
	return jsonReply(http.StatusOK, map[string]any{"result": result, "success": true, "errors": []any{}, "messages": []any{}})
}

func (s *WorkersAI) run(r *http.Request, rec *Request) reply {
	if acct := r.PathValue("account"); acct != s.opts.AccountID {
		return cfErrors(http.StatusBadRequest,
			cfErr{7003, "Could not route to " + r.URL.Path + ", perhaps your object identifier is invalid?"},
			cfErr{7000, "No route for that URI"})
	}
	model := r.PathValue("model")
	rec.Model = model
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	isJSON := mt == "application/json"
	var in map[string]any
	if isJSON {
		if err := json.Unmarshal(rec.Body, &in); err != nil {
			return cfErrors(http.StatusBadRequest, cfErr{5006, "Error: invalid JSON input: " + err.Error()})
		}
		rec.JSON = in
	}
	switch {
	case model == "@cf/openai/whisper" || model == "@cf/openai/whisper-tiny-en":
		audio, rep := binaryInput(rec.Body, isJSON, in, "audio")
		if rep != nil {
			return *rep
		}
		return cfResult(s.whisper(audio))
	case model == "@cf/openai/whisper-large-v3-turbo":
		if !isJSON {
			return cfErrors(http.StatusBadRequest, cfErr{5006, "Error: required properties at '/' are 'audio'"})
		}
		b64, ok := in["audio"].(string)
		if !ok {
			return cfErrors(http.StatusBadRequest, cfErr{5006, "Error: required properties at '/' are 'audio'; '/audio' must be string"})
		}
		audio, err := base64.StdEncoding.DecodeString(b64)
		if err != nil || len(audio) == 0 {
			return cfErrors(http.StatusBadRequest, cfErr{5004, "Invalid data type for base64 input: audio"})
		}
		lang, _ := in["language"].(string)
		return cfResult(s.whisperTurbo(lang))
	case model == "@cf/microsoft/resnet-50":
		img, rep := binaryInput(rec.Body, isJSON, in, "image")
		if rep != nil {
			return *rep
		}
		if !isImage(img) {
			return cfErrors(http.StatusBadRequest, cfErr{5004, "Invalid data type for image input: not a decodable image"})
		}
		rec.Images = append(rec.Images, img)
		return cfResult(s.classify())
	case model == "@cf/llava-hf/llava-1.5-7b-hf" || model == "@cf/unum/uform-gen2-qwen-500m":
		if !isJSON {
			return cfErrors(http.StatusBadRequest, cfErr{5006, "Error: required properties at '/' are 'image'"})
		}
		img, rep := byteArrayField(in, "image")
		if rep != nil {
			return *rep
		}
		rec.Images = append(rec.Images, img)
		text := or(s.opts.Description, SampleDescription)
		rec.PromptTokens, rec.CompletionTokens = 0, countTokens(text)
		return cfResult(map[string]any{"description": text})
	case model == "@cf/meta/llama-3.2-11b-vision-instruct":
		if !isJSON {
			return cfErrors(http.StatusBadRequest, cfErr{5006, "Error: required properties at '/' are 'prompt'"})
		}
		prompt := promptText(in)
		if prompt == "" {
			return cfErrors(http.StatusBadRequest, cfErr{5006, "Error: oneOf at '/' not met, required properties at '/' are 'prompt' or 'messages'"})
		}
		if _, isString := in["image"].(string); isString {
			img, err := base64.StdEncoding.DecodeString(in["image"].(string))
			if err != nil || !isImage(img) {
				return cfErrors(http.StatusBadRequest, cfErr{5004, "Invalid data type for base64 input: image"})
			}
			rec.Images = append(rec.Images, img)
		} else if in["image"] != nil {
			img, rep := byteArrayField(in, "image")
			if rep != nil {
				return *rep
			}
			rec.Images = append(rec.Images, img)
		}
		text := SampleSummary
		if len(rec.Images) > 0 {
			text = or(s.opts.Description, SampleDescription)
		}
		return cfResult(s.generated(rec, prompt, text))
	case strings.HasPrefix(model, "@cf/meta/llama-") || strings.HasPrefix(model, "@cf/mistral/"):
		if !isJSON {
			return cfErrors(http.StatusBadRequest, cfErr{5006, "Error: required properties at '/' are 'prompt'"})
		}
		prompt := promptText(in)
		if prompt == "" {
			return cfErrors(http.StatusBadRequest, cfErr{5006, "Error: oneOf at '/' not met, required properties at '/' are 'prompt' or 'messages'"})
		}
		if mt, ok := in["max_tokens"].(float64); ok && mt < 1 {
			return cfErrors(http.StatusBadRequest, cfErr{5006, "Error: '/max_tokens' must be >= 1"})
		}
		out := s.generated(rec, prompt, or(s.opts.Summary, SampleSummary))
		out["tool_calls"] = []any{}
		return cfResult(out)
	}
	return cfErrors(http.StatusBadRequest, cfErr{5007, "No such model " + model + " or task"})
}

func (s *WorkersAI) generated(rec *Request, prompt, text string) map[string]any {
	rec.PromptTokens = 12 + countTokens(prompt)
	rec.CompletionTokens = countTokens(text)
	return map[string]any{
		"response": text,
		"usage": map[string]any{
			"prompt_tokens":     rec.PromptTokens,
			"completion_tokens": rec.CompletionTokens,
			"total_tokens":      rec.PromptTokens + rec.CompletionTokens,
		},
	}
}

func (s *WorkersAI) transcript() Transcript {
	if s.opts.Transcript != nil {
		return *s.opts.Transcript
	}
	return SampleTranscript()
}

// words spreads each segment's words evenly over its time.
func words(tr Transcript) []map[string]any {
	var out []map[string]any
	for _, sg := range tr.Segments {
		ws := strings.Fields(sg.Text)
		step := (sg.End - sg.Start) / float64(max(len(ws), 1))
		for i, w := range ws {
			out = append(out, map[string]any{
				"word":  w,
				"start": round3(sg.Start + float64(i)*step),
				"end":   round3(sg.Start + float64(i+1)*step),
			})
		}
	}
	return out
}

func vtt(tr Transcript) string {
	var b strings.Builder
	b.WriteString("WEBVTT\n\n")
	for _, sg := range tr.Segments {
		fmt.Fprintf(&b, "%s --> %s\n%s\n\n", vttTime(sg.Start), vttTime(sg.End), sg.Text)
	}
	return b.String()
}

func vttTime(t float64) string {
	ms := int(t*1000 + 0.5)
	return fmt.Sprintf("%02d:%02d.%03d", ms/60000, ms/1000%60, ms%1000)
}

func (s *WorkersAI) whisper([]byte) map[string]any {
	tr := s.transcript()
	ws := words(tr)
	return map[string]any{"text": tr.Text(), "word_count": len(ws), "words": ws, "vtt": vtt(tr)}
}

func (s *WorkersAI) whisperTurbo(lang string) map[string]any {
	tr := s.transcript()
	if lang != "" {
		tr.Language = lang
	}
	var segs []map[string]any
	for _, sg := range tr.Segments {
		segs = append(segs, map[string]any{
			"start": sg.Start, "end": sg.End, "text": sg.Text,
			"temperature": 0, "avg_logprob": -0.19, "compression_ratio": 1.27, "no_speech_prob": 0.008,
			"words": words(Transcript{Segments: []Segment{sg}}),
		})
	}
	return map[string]any{
		"transcription_info": map[string]any{
			"language": tr.Language, "language_probability": 0.98,
			"duration": tr.Duration, "duration_after_vad": tr.Duration,
		},
		"text":       tr.Text(),
		"word_count": len(words(tr)),
		"segments":   segs,
		"vtt":        vtt(tr),
	}
}

func (s *WorkersAI) classify() []map[string]any {
	labels := s.opts.Labels
	if labels == nil {
		labels = SampleLabels()
	}
	labels = append([]Label(nil), labels...)
	sort.SliceStable(labels, func(i, j int) bool { return labels[i].Score > labels[j].Score })
	out := make([]map[string]any, 0, len(labels))
	for _, l := range labels {
		out = append(out, map[string]any{"label": strings.ToUpper(l.Name), "score": l.Score})
	}
	return out
}

// binaryInput reads a model's binary input: the raw body, or a JSON
// field holding an array of byte values.
func binaryInput(body []byte, isJSON bool, in map[string]any, field string) ([]byte, *reply) {
	if !isJSON {
		if len(body) == 0 {
			rep := cfErrors(http.StatusBadRequest, cfErr{3003, "Request is missing headers or body: body"})
			return nil, &rep
		}
		return body, nil
	}
	return byteArrayField(in, field)
}

func byteArrayField(in map[string]any, field string) ([]byte, *reply) {
	arr, ok := in[field].([]any)
	if !ok || len(arr) == 0 {
		rep := cfErrors(http.StatusBadRequest, cfErr{5006, fmt.Sprintf("Error: required properties at '/' are '%s'; '/%s' must be array of integers", field, field)})
		return nil, &rep
	}
	out := make([]byte, len(arr))
	for i, v := range arr {
		f, ok := v.(float64)
		if !ok || f < 0 || f > 255 || f != float64(int(f)) {
			rep := cfErrors(http.StatusBadRequest, cfErr{5006, fmt.Sprintf("Error: '/%s/%d' must be an integer between 0 and 255", field, i)})
			return nil, &rep
		}
		out[i] = byte(f)
	}
	return out, nil
}

// promptText is the text of a prompt-form or messages-form input.
func promptText(in map[string]any) string {
	if p, ok := in["prompt"].(string); ok {
		return p
	}
	msgs, _ := in["messages"].([]any)
	var texts []string
	for _, m := range msgs {
		mm, _ := m.(map[string]any)
		if c, ok := mm["content"].(string); ok {
			texts = append(texts, c)
		}
	}
	return strings.Join(texts, "\n")
}

func isImage(b []byte) bool {
	return bytes.HasPrefix(b, []byte{0xFF, 0xD8, 0xFF}) || bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) ||
		bytes.HasPrefix(b, []byte("GIF8")) || (len(b) > 12 && string(b[:4]) == "RIFF" && string(b[8:12]) == "WEBP")
}

func round3(f float64) float64 { return float64(int(f*1000+0.5)) / 1000 }
