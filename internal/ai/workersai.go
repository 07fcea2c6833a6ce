package ai

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// DefaultWorkersAIBaseURL is Cloudflare's API, where a "workers-ai"
// provider with no base URL sends its calls.
const DefaultWorkersAIBaseURL = "https://api.cloudflare.com/client/v4"

// workersAIDefaultModels are used for tasks the configuration names no
// model for. The vision default is LLaVA because it needs no licence
// agreement; @cf/meta/llama-3.2-11b-vision-instruct works too once the
// account has agreed to Meta's terms (until then it answers code 5016).
var workersAIDefaultModels = map[Task]string{
	TaskTranscribe: "@cf/openai/whisper-large-v3-turbo",
	TaskTag:        "@cf/microsoft/resnet-50",
	TaskDescribe:   "@cf/llava-hf/llava-1.5-7b-hf",
	TaskSummarize:  "@cf/meta/llama-3.1-8b-instruct",
}

// WorkersAI is a provider that runs models on Cloudflare Workers AI
// through its REST API, POST {base}/accounts/{account}/ai/run/{model}:
// Whisper for speech, ResNet-50 for labels, a vision-language model for
// descriptions and a Llama text model for summaries.
type WorkersAI struct {
	name    string
	base    string
	account string
	hasKey  bool
	models  map[Task]string
	http    *httpClient
}

var (
	_ Transcriber = (*WorkersAI)(nil)
	_ Describer   = (*WorkersAI)(nil)
	_ Summarizer  = (*WorkersAI)(nil)
	_ Tagger      = (*WorkersAI)(nil)
)

// NewWorkersAI returns a Workers AI provider for pc.AccountID. A missing
// account or key is not an error here: Available reports it.
func NewWorkersAI(pc ProviderConfig) (*WorkersAI, error) {
	name, base, models, err := remoteSetup(pc, "the Workers AI provider", "workers-ai", DefaultWorkersAIBaseURL, workersAIDefaultModels,
		func(t Task) bool { _, ok := workersAIDefaultModels[t]; return ok })
	if err != nil {
		return nil, err
	}
	for t, m := range models {
		for _, seg := range strings.Split(m, "/") {
			if seg == "" || seg == "." || seg == ".." {
				return nil, fmt.Errorf("ai: provider %q: model %q for %s is not a model name", name, m, t)
			}
		}
	}
	return &WorkersAI{
		name:    name,
		base:    base,
		account: strings.TrimSpace(pc.AccountID),
		hasKey:  pc.APIKey != "",
		models:  models,
		http:    newHTTPClient(name, pc.APIKey),
	}, nil
}

// Name implements Provider.
func (w *WorkersAI) Name() string { return w.name }

// Model implements Provider.
func (w *WorkersAI) Model(t Task) string { return w.models[t] }

// Available reports whether the provider has an account and an API
// token; whether Cloudflare answers is the gateway breaker's business.
func (w *WorkersAI) Available(ctx context.Context) error {
	switch {
	case w.account == "":
		return fmt.Errorf("%w: %s: no account ID configured", ErrUnavailable, w.name)
	case !w.hasKey:
		return fmt.Errorf("%w: %s: no API token configured", ErrUnavailable, w.name)
	}
	return nil
}

// Transcribe implements Transcriber. whisper-large-v3-turbo takes JSON
// with base64 audio, a language and a prompt, and returns segments; the
// older whisper models take the raw file and return words and WebVTT,
// from which segments are rebuilt.
func (w *WorkersAI) Transcribe(ctx context.Context, req TranscribeRequest) (Transcript, Usage, error) {
	if len(req.Audio) == 0 {
		return Transcript{}, Usage{}, fmt.Errorf("ai: %s: transcribe: no audio", w.name)
	}
	model := w.models[TaskTranscribe]
	var (
		result json.RawMessage
		err    error
	)
	if strings.Contains(model, "whisper-large-v3") {
		in := map[string]any{"audio": base64.StdEncoding.EncodeToString(req.Audio), "task": "transcribe"}
		if req.Language != "" {
			in["language"] = req.Language
		}
		if req.Prompt != "" {
			in["initial_prompt"] = req.Prompt
		}
		result, err = w.runJSON(ctx, model, in)
	} else {
		result, err = w.run(ctx, model, "application/octet-stream", req.Audio)
	}
	if err != nil {
		return Transcript{}, Usage{}, err
	}
	var r struct {
		Text  string `json:"text"`
		Words []struct {
			Word  string  `json:"word"`
			Start float64 `json:"start"`
			End   float64 `json:"end"`
		} `json:"words"`
		VTT      string `json:"vtt"`
		Segments []struct {
			Start float64 `json:"start"`
			End   float64 `json:"end"`
			Text  string  `json:"text"`
		} `json:"segments"`
		Info *struct {
			Language string  `json:"language"`
			Duration float64 `json:"duration"`
		} `json:"transcription_info"`
	}
	if err := json.Unmarshal(result, &r); err != nil {
		return Transcript{}, Usage{}, w.http.malformed("transcription", err)
	}
	tr := Transcript{Text: strings.TrimSpace(r.Text), Language: req.Language}
	duration := req.Duration
	if r.Info != nil {
		if r.Info.Language != "" {
			tr.Language = whisperLanguageCode(r.Info.Language)
		}
		if r.Info.Duration > 0 {
			duration = r.Info.Duration
		}
	}
	for _, s := range r.Segments {
		if text := strings.TrimSpace(s.Text); text != "" {
			tr.Segments = append(tr.Segments, Segment{Start: s.Start, End: s.End, Text: text})
		}
	}
	if len(tr.Segments) == 0 && len(r.Words) > 0 {
		words := make([]Segment, 0, len(r.Words))
		for _, wd := range r.Words {
			words = append(words, Segment{Start: wd.Start, End: wd.End, Text: wd.Word})
		}
		tr.Segments = groupWords(words)
	}
	if len(tr.Segments) == 0 && r.VTT != "" {
		tr.Segments = parseVTTCues(r.VTT)
	}
	if len(tr.Segments) == 0 && tr.Text != "" {
		tr.Segments = []Segment{{Start: 0, End: duration, Text: tr.Text}}
	}
	if tr.Text == "" && len(tr.Segments) > 0 {
		tr.Text = segmentsText(tr.Segments)
	}
	return tr, Usage{AudioSeconds: duration}, nil
}

// Tag implements Tagger with an image classifier (ResNet-50 by default),
// which takes the raw image and returns ImageNet classes with scores.
func (w *WorkersAI) Tag(ctx context.Context, req TagRequest) ([]Label, Usage, error) {
	if len(req.Image.Data) == 0 {
		return nil, Usage{}, fmt.Errorf("ai: %s: tag: no image", w.name)
	}
	result, err := w.run(ctx, w.models[TaskTag], "application/octet-stream", req.Image.Data)
	if err != nil {
		return nil, Usage{}, err
	}
	var r []struct {
		Label string          `json:"label"`
		Score json.RawMessage `json:"score"`
	}
	if err := json.Unmarshal(result, &r); err != nil {
		return nil, Usage{}, w.http.malformed("labels", err)
	}
	seen := make(map[string]bool)
	var labels []Label
	for _, c := range r {
		name := strings.ToLower(strings.Join(strings.Fields(c.Label), " "))
		if name == "" || seen[name] {
			continue
		}
		seen[name] = true
		score, err := strconv.ParseFloat(jsonScalarString(c.Score), 64)
		if err != nil {
			return nil, Usage{}, w.http.malformed("labels", fmt.Errorf("score of %q: %w", name, err))
		}
		labels = append(labels, Label{Name: name, Score: clampScore(score)})
	}
	if len(labels) == 0 {
		return nil, Usage{}, w.http.malformed("labels", errors.New("no labels"))
	}
	sort.SliceStable(labels, func(i, j int) bool { return labels[i].Score > labels[j].Score })
	if req.TopK > 0 && len(labels) > req.TopK {
		labels = labels[:req.TopK]
	}
	return labels, Usage{Images: 1}, nil
}

// Describe implements Describer. Workers AI's vision models (LLaVA,
// Llama 3.2 Vision) take one image per call, so each frame is described
// on its own and the descriptions are joined in order.
func (w *WorkersAI) Describe(ctx context.Context, req DescribeRequest) (Description, Usage, error) {
	if len(req.Images) == 0 {
		return Description{}, Usage{}, fmt.Errorf("ai: %s: describe: no images", w.name)
	}
	prompt := req.Prompt
	if prompt == "" {
		prompt = describePrompt(1)
	}
	var (
		texts []string
		u     Usage
	)
	for _, img := range req.Images {
		// Both input shapes (AiImageToText, Llama 3.2 Vision's prompt
		// form) take {prompt, image: bytes, max_tokens}; the answer is in
		// "description" or "response".
		result, err := w.runJSON(ctx, w.models[TaskDescribe], map[string]any{
			"prompt":     prompt,
			"image":      jsonBytes(img.Data),
			"max_tokens": intOr(req.MaxTokens, 200),
		})
		if err != nil {
			return Description{}, Usage{}, err
		}
		text, tu, err := w.generated(result)
		if err != nil {
			return Description{}, Usage{}, err
		}
		texts = append(texts, text)
		u = u.Add(tu)
		u.Images++
	}
	return Description{Text: strings.Join(texts, " ")}, u, nil
}

// Summarize implements Summarizer with a text model in chat form.
func (w *WorkersAI) Summarize(ctx context.Context, req SummarizeRequest) (Summary, Usage, error) {
	if strings.TrimSpace(req.Text) == "" {
		return Summary{}, Usage{}, fmt.Errorf("ai: %s: summarize: no text", w.name)
	}
	prompt := req.Prompt
	if prompt == "" {
		prompt = summarizePrompt
	}
	result, err := w.runJSON(ctx, w.models[TaskSummarize], map[string]any{
		"messages": []chatMessage{
			{Role: "system", Content: prompt},
			{Role: "user", Content: req.Text},
		},
		"max_tokens": intOr(req.MaxTokens, 300),
	})
	if err != nil {
		return Summary{}, Usage{}, err
	}
	text, u, err := w.generated(result)
	if err != nil {
		return Summary{}, Usage{}, err
	}
	return Summary{Text: text}, u, nil
}

// generated reads a text-generating model's result: "response" (text
// generation, Llama vision), "description" (image-to-text), or OpenAI's
// "choices" (newer models), with token usage where reported.
func (w *WorkersAI) generated(result json.RawMessage) (string, Usage, error) {
	var r struct {
		Response    json.RawMessage `json:"response"`
		Description string          `json:"description"`
		Choices     []struct {
			Message struct {
				Content json.RawMessage `json:"content"`
			} `json:"message"`
		} `json:"choices"`
		Usage struct {
			PromptTokens     int `json:"prompt_tokens"`
			CompletionTokens int `json:"completion_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(result, &r); err != nil {
		return "", Usage{}, w.http.malformed("generated text", err)
	}
	u := Usage{InputTokens: r.Usage.PromptTokens, OutputTokens: r.Usage.CompletionTokens}
	text := r.Description
	if len(r.Response) > 0 && string(r.Response) != "null" {
		var s string
		if json.Unmarshal(r.Response, &s) == nil {
			text = s
		} else {
			// JSON mode answers with an object.
			text = string(r.Response)
		}
	}
	if text == "" && len(r.Choices) > 0 {
		text = chatContentText(r.Choices[0].Message.Content)
	}
	if text = strings.TrimSpace(text); text == "" {
		return "", u, w.http.malformed("generated text", errors.New("empty answer"))
	}
	return text, u, nil
}

func (w *WorkersAI) runJSON(ctx context.Context, model string, in any) (json.RawMessage, error) {
	body, err := json.Marshal(in)
	if err != nil {
		return nil, fmt.Errorf("ai: %s: encoding request: %w", w.name, err)
	}
	return w.run(ctx, model, "application/json", body)
}

// run calls a model and returns the "result" of Cloudflare's envelope,
// {"result":...,"success":bool,"errors":[{"code","message"}],"messages":[]}.
func (w *WorkersAI) run(ctx context.Context, model, contentType string, body []byte) (json.RawMessage, error) {
	segs := strings.Split(model, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	endpoint := w.base + "/accounts/" + url.PathEscape(w.account) + "/ai/run/" + strings.Join(segs, "/")
	data, err := w.http.post(ctx, endpoint, contentType, body, workersAIEnvelope)
	if err != nil {
		return nil, err
	}
	var env struct {
		Result  json.RawMessage `json:"result"`
		Success *bool           `json:"success"`
	}
	if err := json.Unmarshal(data, &env); err != nil {
		return nil, w.http.malformed("envelope", err)
	}
	if env.Success == nil {
		return nil, w.http.malformed("envelope", errors.New(`no "success" field`))
	}
	if !*env.Success {
		code, msg, _ := workersAIEnvelope(data)
		if msg == "" {
			msg = "call failed with no error message"
		}
		return nil, &ProviderError{Provider: w.name, Status: 200, Code: w.http.redact(code),
			Message: w.http.redact(msg), Temporary: temporaryWorkersAICode(code)}
	}
	if len(env.Result) == 0 || string(env.Result) == "null" {
		return nil, w.http.malformed("envelope", errors.New("no result"))
	}
	return env.Result, nil
}

// workersAIEnvelope reads the errors of Cloudflare's envelope (several
// are joined), or the {"error":{"code","message"}} form some Workers AI
// failures take.
func workersAIEnvelope(body []byte) (code, message string, ok bool) {
	type cfError struct {
		Code    json.RawMessage `json:"code"`
		Message string          `json:"message"`
	}
	var env struct {
		Errors []cfError        `json:"errors"`
		Error  *json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &env) != nil {
		return "", "", false
	}
	if len(env.Errors) > 0 {
		msgs := make([]string, 0, len(env.Errors))
		for _, e := range env.Errors {
			if e.Message != "" {
				msgs = append(msgs, e.Message)
			}
		}
		return jsonScalarString(env.Errors[0].Code), strings.Join(msgs, "; "), true
	}
	if env.Error != nil {
		var e cfError
		if json.Unmarshal(*env.Error, &e) == nil && (e.Message != "" || len(e.Code) > 0) {
			return jsonScalarString(e.Code), e.Message, true
		}
		var s string
		if json.Unmarshal(*env.Error, &s) == nil && s != "" {
			return "", s, true
		}
	}
	return "", "", false
}

// temporaryWorkersAICode marks the Workers AI error codes worth another
// try when they come without a telling HTTP status: 3007 request
// timeout, 3040 out of capacity.
func temporaryWorkersAICode(code string) bool {
	return code == "3007" || code == "3040"
}

// groupWords joins timed words into segments at sentence ends, pauses
// of a second or more, or every 20 words.
func groupWords(words []Segment) []Segment {
	var (
		out []Segment
		cur []string
		seg Segment
	)
	flush := func() {
		if len(cur) > 0 {
			seg.Text = strings.Join(cur, " ")
			out = append(out, seg)
		}
		cur = nil
	}
	for _, wd := range words {
		text := strings.TrimSpace(wd.Text)
		if text == "" {
			continue
		}
		if len(cur) > 0 && wd.Start-seg.End >= 1 {
			flush()
		}
		if len(cur) == 0 {
			seg = Segment{Start: wd.Start}
		}
		cur = append(cur, text)
		seg.End = wd.End
		if strings.ContainsAny(text[len(text)-1:], ".?!") || len(cur) >= 20 {
			flush()
		}
	}
	flush()
	return out
}

// parseVTTCues reads the cues of a WebVTT document as segments.
func parseVTTCues(vtt string) []Segment {
	var (
		out  []Segment
		cur  *Segment
		text []string
	)
	end := func() {
		if cur != nil && len(text) > 0 {
			cur.Text = strings.Join(text, " ")
			out = append(out, *cur)
		}
		cur, text = nil, nil
	}
	for _, line := range strings.Split(strings.ReplaceAll(vtt, "\r\n", "\n"), "\n") {
		line = strings.TrimSpace(line)
		if start, stop, ok := strings.Cut(line, "-->"); ok {
			end()
			// The end time may be followed by cue settings.
			stopFields := strings.Fields(stop)
			if len(stopFields) == 0 {
				continue
			}
			s, err1 := parseVTTTime(start)
			e, err2 := parseVTTTime(stopFields[0])
			if err1 == nil && err2 == nil {
				cur = &Segment{Start: s, End: e}
			}
			continue
		}
		if line == "" {
			end()
			continue
		}
		if cur != nil {
			text = append(text, strings.TrimSpace(strings.TrimPrefix(line, "-")))
		}
	}
	end()
	return out
}

// parseVTTTime reads hh:mm:ss.ttt, mm:ss.ttt or ss.ttt.
func parseVTTTime(s string) (float64, error) {
	parts := strings.Split(strings.TrimSpace(s), ":")
	if len(parts) > 3 {
		return 0, fmt.Errorf("bad cue time %q", s)
	}
	var t float64
	for _, p := range parts {
		v, err := strconv.ParseFloat(p, 64)
		if err != nil {
			return 0, fmt.Errorf("bad cue time %q", s)
		}
		t = t*60 + v
	}
	return t, nil
}
