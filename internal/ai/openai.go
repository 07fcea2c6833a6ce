package ai

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"mime/multipart"
	"net/textproto"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"
)

// DefaultOpenAIBaseURL is where an "openai" provider with no base URL
// sends its calls.
const DefaultOpenAIBaseURL = "https://api.openai.com/v1"

// openAIDefaultModels are used for tasks the configuration names no
// model for. Local servers (whisper.cpp, llama.cpp, Ollama, vLLM,
// LocalAI) serve models of their own names: configure those.
var openAIDefaultModels = map[Task]string{
	TaskTranscribe: "whisper-1",
	TaskDescribe:   "gpt-4o-mini",
	TaskTag:        "gpt-4o-mini",
	TaskModerate:   "omni-moderation-latest",
	TaskSummarize:  "gpt-4o-mini",
}

// OpenAI is a provider that speaks the OpenAI HTTP API: audio
// transcriptions, chat completions with image input, and moderations. The
// same API is served by whisper.cpp's and llama.cpp's servers, Ollama,
// vLLM and LocalAI, reached through the configured base URL.
type OpenAI struct {
	name     string
	base     string
	official bool // the base URL is OpenAI's own, which requires a key
	hasKey   bool
	models   map[Task]string
	http     *httpClient
}

var (
	_ Transcriber = (*OpenAI)(nil)
	_ Describer   = (*OpenAI)(nil)
	_ Summarizer  = (*OpenAI)(nil)
	_ Moderator   = (*OpenAI)(nil)
	_ Tagger      = (*OpenAI)(nil)
)

// NewOpenAI returns a provider for an OpenAI-compatible server. The base
// URL defaults to OpenAI's; pc.Models overrides the default model per
// task. A missing key is not an error here: Available reports it.
func NewOpenAI(pc ProviderConfig) (*OpenAI, error) {
	name, base, models, err := remoteSetup(pc, "an OpenAI-compatible server", "openai", DefaultOpenAIBaseURL, openAIDefaultModels,
		func(t Task) bool { return t != TaskOCR })
	if err != nil {
		return nil, err
	}
	u, _ := url.Parse(base)
	return &OpenAI{
		name:     name,
		base:     base,
		official: strings.EqualFold(u.Hostname(), "api.openai.com"),
		hasKey:   pc.APIKey != "",
		models:   models,
		http:     newHTTPClient(name, pc.APIKey),
	}, nil
}

// Name implements Provider.
func (o *OpenAI) Name() string { return o.name }

// Model implements Provider.
func (o *OpenAI) Model(t Task) string { return o.models[t] }

// Available reports whether the provider is configured to take calls: it
// checks configuration only, since the gateway's breaker tracks whether
// the server answers. OpenAI's own API needs a key; local servers
// usually take none.
func (o *OpenAI) Available(ctx context.Context) error {
	if o.official && !o.hasKey {
		return fmt.Errorf("%w: %s: no API key configured", ErrUnavailable, o.name)
	}
	return nil
}

// Transcribe implements Transcriber with POST /audio/transcriptions,
// asking for verbose_json to get segments with timestamps.
func (o *OpenAI) Transcribe(ctx context.Context, req TranscribeRequest) (Transcript, Usage, error) {
	if len(req.Audio) == 0 {
		return Transcript{}, Usage{}, fmt.Errorf("ai: %s: transcribe: no audio", o.name)
	}
	filename := path.Base(strings.ReplaceAll(req.Filename, "\\", "/"))
	if filename == "." || filename == "/" || filename == "" {
		filename = "audio.wav"
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	h := make(textproto.MIMEHeader)
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="file"; filename="%s"`, formQuoteEscaper.Replace(filename)))
	h.Set("Content-Type", audioUploadMIME(filename))
	fw, err := mw.CreatePart(h)
	if err == nil {
		_, err = fw.Write(req.Audio)
	}
	fields := [][2]string{
		{"model", o.models[TaskTranscribe]},
		{"response_format", "verbose_json"},
		{"timestamp_granularities[]", "segment"},
		{"language", req.Language},
		{"prompt", req.Prompt},
	}
	for _, f := range fields {
		if err == nil && f[1] != "" {
			err = mw.WriteField(f[0], f[1])
		}
	}
	if err == nil {
		err = mw.Close()
	}
	if err != nil {
		return Transcript{}, Usage{}, fmt.Errorf("ai: %s: building upload: %w", o.name, err)
	}

	data, err := o.http.post(ctx, o.base+"/audio/transcriptions", mw.FormDataContentType(), body.Bytes(), openAIEnvelope)
	if err != nil {
		return Transcript{}, Usage{}, err
	}
	var r struct {
		Text     string  `json:"text"`
		Language string  `json:"language"`
		Duration float64 `json:"duration"`
		Segments []struct {
			Start float64 `json:"start"`
			End   float64 `json:"end"`
			Text  string  `json:"text"`
		} `json:"segments"`
		Usage *struct {
			Type         string  `json:"type"`
			Seconds      float64 `json:"seconds"`
			InputTokens  int     `json:"input_tokens"`
			OutputTokens int     `json:"output_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return Transcript{}, Usage{}, o.http.malformed("transcription", err)
	}
	tr := Transcript{Text: strings.TrimSpace(r.Text), Language: whisperLanguageCode(r.Language)}
	if tr.Language == "" {
		tr.Language = req.Language
	}
	for _, s := range r.Segments {
		if text := strings.TrimSpace(s.Text); text != "" {
			tr.Segments = append(tr.Segments, Segment{Start: s.Start, End: s.End, Text: text})
		}
	}
	duration := r.Duration
	if duration <= 0 {
		duration = req.Duration
	}
	if len(tr.Segments) == 0 && tr.Text != "" {
		// Models and servers that give no segments (gpt-4o-transcribe,
		// plain json): the whole text spans the audio.
		tr.Segments = []Segment{{Start: 0, End: duration, Text: tr.Text}}
	}
	if tr.Text == "" && len(tr.Segments) > 0 {
		tr.Text = segmentsText(tr.Segments)
	}
	u := Usage{AudioSeconds: duration}
	if r.Usage != nil {
		switch r.Usage.Type {
		case "duration":
			if r.Usage.Seconds > 0 {
				u.AudioSeconds = r.Usage.Seconds
			}
		case "tokens":
			u.InputTokens, u.OutputTokens = r.Usage.InputTokens, r.Usage.OutputTokens
		}
	}
	return tr, u, nil
}

// Describe implements Describer: the frames go to chat completions as
// data URLs in one user message, in order.
func (o *OpenAI) Describe(ctx context.Context, req DescribeRequest) (Description, Usage, error) {
	if len(req.Images) == 0 {
		return Description{}, Usage{}, fmt.Errorf("ai: %s: describe: no images", o.name)
	}
	prompt := req.Prompt
	if prompt == "" {
		prompt = describePrompt(len(req.Images))
	}
	parts := []chatPart{{Type: "text", Text: prompt}}
	for _, img := range req.Images {
		parts = append(parts, imagePart(img))
	}
	text, u, err := o.chat(ctx, TaskDescribe, []chatMessage{{Role: "user", Content: parts}}, intOr(req.MaxTokens, 200), false)
	if err != nil {
		return Description{}, Usage{}, err
	}
	u.Images = len(req.Images)
	return Description{Text: text}, u, nil
}

// Summarize implements Summarizer with chat completions.
func (o *OpenAI) Summarize(ctx context.Context, req SummarizeRequest) (Summary, Usage, error) {
	if strings.TrimSpace(req.Text) == "" {
		return Summary{}, Usage{}, fmt.Errorf("ai: %s: summarize: no text", o.name)
	}
	prompt := req.Prompt
	if prompt == "" {
		prompt = summarizePrompt
	}
	msgs := []chatMessage{{Role: "system", Content: prompt}, {Role: "user", Content: req.Text}}
	text, u, err := o.chat(ctx, TaskSummarize, msgs, intOr(req.MaxTokens, 300), false)
	if err != nil {
		return Summary{}, Usage{}, err
	}
	return Summary{Text: text}, u, nil
}

// Tag implements Tagger with chat completions in JSON mode: the model is
// asked for labels with confidences, and its answer parsed leniently.
func (o *OpenAI) Tag(ctx context.Context, req TagRequest) ([]Label, Usage, error) {
	if len(req.Image.Data) == 0 {
		return nil, Usage{}, fmt.Errorf("ai: %s: tag: no image", o.name)
	}
	k := intOr(req.TopK, 10)
	prompt := fmt.Sprintf("List up to %d labels for the main objects, scenes and concepts in this image. "+
		"Answer with JSON only, in the form {\"labels\":[{\"name\":\"dog\",\"score\":0.97}]}, "+
		"where score is your confidence from 0 to 1, highest first. Use short lower-case English nouns.", k)
	msgs := []chatMessage{{Role: "user", Content: []chatPart{{Type: "text", Text: prompt}, imagePart(req.Image)}}}
	text, u, err := o.chat(ctx, TaskTag, msgs, 40+25*k, true)
	if err != nil {
		return nil, Usage{}, err
	}
	labels, err := parseLabelAnswer(text, req.TopK)
	if err != nil {
		return nil, Usage{}, o.http.malformed("labels", err)
	}
	u.Images = 1
	return labels, u, nil
}

// Moderate implements Moderator with POST /moderations. Text alone goes
// as a string, which every moderation model takes; each image goes in a
// call of its own (with the text in the first), since omni-moderation
// judges one image per call, and the verdicts are merged: flagged if any
// call flagged, the highest score per category.
func (o *OpenAI) Moderate(ctx context.Context, req ModerateRequest) (Moderation, Usage, error) {
	if len(req.Images) == 0 && strings.TrimSpace(req.Text) == "" {
		return Moderation{}, Usage{}, fmt.Errorf("ai: %s: moderate: nothing to moderate", o.name)
	}
	var inputs []any
	if len(req.Images) == 0 {
		inputs = append(inputs, req.Text)
	}
	for i, img := range req.Images {
		var parts []chatPart
		if i == 0 && req.Text != "" {
			parts = append(parts, chatPart{Type: "text", Text: req.Text})
		}
		inputs = append(inputs, append(parts, imagePart(img)))
	}
	m := Moderation{Categories: map[string]float64{}}
	for _, in := range inputs {
		r, err := o.moderate(ctx, in)
		if err != nil {
			return Moderation{}, Usage{}, err
		}
		m.Flagged = m.Flagged || r.Flagged
		for c, s := range r.Categories {
			if cur, ok := m.Categories[c]; !ok || s > cur {
				m.Categories[c] = s
			}
		}
	}
	return m, Usage{Images: len(req.Images)}, nil
}

func (o *OpenAI) moderate(ctx context.Context, input any) (Moderation, error) {
	body, err := json.Marshal(map[string]any{"model": o.models[TaskModerate], "input": input})
	if err != nil {
		return Moderation{}, fmt.Errorf("ai: %s: encoding request: %w", o.name, err)
	}
	data, err := o.http.post(ctx, o.base+"/moderations", "application/json", body, openAIEnvelope)
	if err != nil {
		return Moderation{}, err
	}
	var r struct {
		Results []struct {
			Flagged        bool               `json:"flagged"`
			CategoryScores map[string]float64 `json:"category_scores"`
		} `json:"results"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return Moderation{}, o.http.malformed("moderation", err)
	}
	if len(r.Results) == 0 {
		return Moderation{}, o.http.malformed("moderation", errors.New("no results"))
	}
	m := Moderation{Flagged: r.Results[0].Flagged, Categories: make(map[string]float64, len(r.Results[0].CategoryScores))}
	for c, s := range r.Results[0].CategoryScores {
		m.Categories[c] = clampScore(s)
	}
	return m, nil
}

// chatMessage and chatPart are the request side of chat completions.
type chatMessage struct {
	Role    string `json:"role"`
	Content any    `json:"content"` // a string or []chatPart
}

type chatPart struct {
	Type     string        `json:"type"`
	Text     string        `json:"text,omitempty"`
	ImageURL *chatImageURL `json:"image_url,omitempty"`
}

type chatImageURL struct {
	URL string `json:"url"`
}

func imagePart(img Image) chatPart {
	return chatPart{Type: "image_url", ImageURL: &chatImageURL{URL: imageDataURL(img)}}
}

// imageDataURL inlines an image, so the server needs no access to our storage.
func imageDataURL(img Image) string {
	return "data:" + imageMIME(img) + ";base64," + base64.StdEncoding.EncodeToString(img.Data)
}

// chat sends one chat completion and returns the assistant's text and
// the tokens it cost.
func (o *OpenAI) chat(ctx context.Context, task Task, msgs []chatMessage, maxTokens int, jsonMode bool) (string, Usage, error) {
	reqBody := map[string]any{
		"model":      o.models[task],
		"messages":   msgs,
		"max_tokens": maxTokens,
	}
	if jsonMode {
		reqBody["response_format"] = map[string]string{"type": "json_object"}
	}
	body, err := json.Marshal(reqBody)
	if err != nil {
		return "", Usage{}, fmt.Errorf("ai: %s: encoding request: %w", o.name, err)
	}
	data, err := o.http.post(ctx, o.base+"/chat/completions", "application/json", body, openAIEnvelope)
	if err != nil {
		return "", Usage{}, err
	}
	var r struct {
		Choices []struct {
			Message struct {
				Content json.RawMessage `json:"content"`
				Refusal string          `json:"refusal"`
			} `json:"message"`
		} `json:"choices"`
		Usage struct {
			PromptTokens     int `json:"prompt_tokens"`
			CompletionTokens int `json:"completion_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return "", Usage{}, o.http.malformed("chat completion", err)
	}
	if len(r.Choices) == 0 {
		return "", Usage{}, o.http.malformed("chat completion", errors.New("no choices"))
	}
	u := Usage{InputTokens: r.Usage.PromptTokens, OutputTokens: r.Usage.CompletionTokens}
	msg := r.Choices[0].Message
	text := strings.TrimSpace(chatContentText(msg.Content))
	if text == "" {
		if msg.Refusal != "" {
			return "", u, &ProviderError{Provider: o.name, Status: 200, Code: "refusal", Message: o.http.redact(msg.Refusal)}
		}
		return "", u, o.http.malformed("chat completion", errors.New("empty message"))
	}
	return text, u, nil
}

// chatContentText reads a message's content: a string, or (some servers)
// an array of parts whose text parts are joined.
func chatContentText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if json.Unmarshal(raw, &parts) == nil {
		var b strings.Builder
		for _, p := range parts {
			b.WriteString(p.Text)
		}
		return b.String()
	}
	return ""
}

// openAIEnvelope reads {"error":{"message","type","param","code"}}, the
// error body of OpenAI and of most compatible servers (llama.cpp sends a
// numeric code), and Ollama's {"error":"..."}.
func openAIEnvelope(body []byte) (code, message string, ok bool) {
	var env struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &env) != nil || len(env.Error) == 0 || string(env.Error) == "null" {
		return "", "", false
	}
	var s string
	if json.Unmarshal(env.Error, &s) == nil {
		return "", s, true
	}
	var e struct {
		Message string          `json:"message"`
		Type    string          `json:"type"`
		Code    json.RawMessage `json:"code"`
	}
	if json.Unmarshal(env.Error, &e) != nil {
		return "", "", false
	}
	code = jsonScalarString(e.Code)
	if code == "" {
		code = e.Type
	}
	return code, e.Message, true
}

const summarizePrompt = "Summarize the following transcript in one short paragraph. " +
	"Say what it is about and its main points; do not invent details."

func describePrompt(n int) string {
	if n == 1 {
		return "Describe what this image shows in one or two sentences."
	}
	return fmt.Sprintf("These are %d frames from one video, in time order. "+
		"Describe what the video shows in one or two sentences.", n)
}

func intOr(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

func clampScore(v float64) float64 {
	switch {
	case math.IsNaN(v) || v < 0:
		return 0
	case v > 1:
		return 1
	}
	return v
}

func segmentsText(segs []Segment) string {
	texts := make([]string, 0, len(segs))
	for _, s := range segs {
		texts = append(texts, s.Text)
	}
	return strings.Join(texts, " ")
}

var formQuoteEscaper = strings.NewReplacer("\\", "\\\\", `"`, "\\\"", "\r", "", "\n", "")

// audioUploadMIME names an upload's type from its extension; servers sniff
// the bytes anyway, but some check the declared type first.
func audioUploadMIME(filename string) string {
	switch strings.ToLower(path.Ext(filename)) {
	case ".flac":
		return "audio/flac"
	case ".mp3", ".mpga", ".mpeg":
		return "audio/mpeg"
	case ".m4a", ".mp4":
		return "audio/mp4"
	case ".ogg", ".oga":
		return "audio/ogg"
	case ".webm":
		return "audio/webm"
	case ".wav":
		return "audio/wav"
	}
	return "application/octet-stream"
}

// unratedScore is the confidence given to a label a model named without
// one: neither confirmed nor ranked.
const unratedScore = 0.5

// parseLabelAnswer reads labels from a model's answer, leniently: JSON in or
// out of a code fence, {"labels":[...]}, a bare array, objects or
// strings, "name"/"label"/"tag" with "score"/"confidence"/"probability"
// as a fraction, a percentage or a numeric string, or a map of label to
// score. Names are lower-cased and deduplicated, scores clamped to
// [0, 1], the result sorted by score and cut to topK (0: no cut).
func parseLabelAnswer(answer string, topK int) ([]Label, error) {
	v, err := answerJSON(answer)
	if err != nil {
		return nil, err
	}
	var items []any
	switch x := v.(type) {
	case []any:
		items = x
	case map[string]any:
		for _, key := range []string{"labels", "tags", "items", "results", "objects", "classes"} {
			if arr, ok := x[key].([]any); ok {
				items = arr
				break
			}
		}
		if items == nil {
			// {"dog": 0.9, "grass": 0.7}
			for name, s := range x {
				if f, ok := labelScore(s); ok {
					items = append(items, map[string]any{"name": name, "score": f})
				}
			}
		}
	}
	seen := make(map[string]bool)
	var labels []Label
	for _, it := range items {
		var l Label
		switch x := it.(type) {
		case string:
			l = Label{Name: x, Score: unratedScore}
		case map[string]any:
			for _, key := range []string{"name", "label", "tag", "class", "object"} {
				if s, ok := x[key].(string); ok {
					l.Name = s
					break
				}
			}
			l.Score = unratedScore
			for _, key := range []string{"score", "confidence", "probability", "prob"} {
				if f, ok := labelScore(x[key]); ok {
					l.Score = f
					break
				}
			}
		}
		l.Name = strings.ToLower(strings.Join(strings.Fields(l.Name), " "))
		if l.Name == "" || seen[l.Name] {
			continue
		}
		seen[l.Name] = true
		labels = append(labels, l)
	}
	if len(labels) == 0 {
		return nil, errors.New("no labels in answer")
	}
	sort.SliceStable(labels, func(i, j int) bool { return labels[i].Score > labels[j].Score })
	if topK > 0 && len(labels) > topK {
		labels = labels[:topK]
	}
	return labels, nil
}

// answerJSON decodes the JSON value in a model's answer, which may come
// in a Markdown code fence or between sentences.
func answerJSON(answer string) (any, error) {
	s := strings.TrimSpace(answer)
	var v any
	if err := json.Unmarshal([]byte(s), &v); err == nil {
		return v, nil
	}
	start := strings.IndexAny(s, "{[")
	end := strings.LastIndexAny(s, "}]")
	if start < 0 || end < start {
		return nil, errors.New("no JSON in answer")
	}
	if err := json.Unmarshal([]byte(s[start:end+1]), &v); err != nil {
		return nil, fmt.Errorf("answer is not JSON: %w", err)
	}
	return v, nil
}

// labelScore reads a confidence: 0.97, 97 (percent), "0.97" or "97%".
func labelScore(v any) (float64, bool) {
	var f float64
	switch x := v.(type) {
	case float64:
		f = x
	case string:
		s := strings.TrimSpace(x)
		pct := strings.HasSuffix(s, "%")
		n, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
		if err != nil {
			return 0, false
		}
		f = n
		if pct {
			f /= 100
		}
	default:
		return 0, false
	}
	if f > 1 && f <= 100 {
		f /= 100
	}
	return clampScore(f), true
}

// whisperLanguages maps the language names Whisper reports in
// verbose_json (OpenAI, whisper.cpp) to ISO 639-1 codes.
var whisperLanguages = map[string]string{
	"english": "en", "chinese": "zh", "german": "de", "spanish": "es", "russian": "ru",
	"korean": "ko", "french": "fr", "japanese": "ja", "portuguese": "pt", "turkish": "tr",
	"polish": "pl", "catalan": "ca", "dutch": "nl", "arabic": "ar", "swedish": "sv",
	"italian": "it", "indonesian": "id", "hindi": "hi", "finnish": "fi", "vietnamese": "vi",
	"hebrew": "he", "ukrainian": "uk", "greek": "el", "malay": "ms", "czech": "cs",
	"romanian": "ro", "danish": "da", "hungarian": "hu", "tamil": "ta", "norwegian": "no",
	"thai": "th", "urdu": "ur", "croatian": "hr", "bulgarian": "bg", "lithuanian": "lt",
	"latin": "la", "maori": "mi", "malayalam": "ml", "welsh": "cy", "slovak": "sk",
	"telugu": "te", "persian": "fa", "latvian": "lv", "bengali": "bn", "serbian": "sr",
	"azerbaijani": "az", "slovenian": "sl", "kannada": "kn", "estonian": "et", "macedonian": "mk",
	"breton": "br", "basque": "eu", "icelandic": "is", "armenian": "hy", "nepali": "ne",
	"mongolian": "mn", "bosnian": "bs", "kazakh": "kk", "albanian": "sq", "swahili": "sw",
	"galician": "gl", "marathi": "mr", "punjabi": "pa", "sinhala": "si", "khmer": "km",
	"shona": "sn", "yoruba": "yo", "somali": "so", "afrikaans": "af", "occitan": "oc",
	"georgian": "ka", "belarusian": "be", "tajik": "tg", "sindhi": "sd", "gujarati": "gu",
	"amharic": "am", "yiddish": "yi", "lao": "lo", "uzbek": "uz", "faroese": "fo",
	"haitian creole": "ht", "pashto": "ps", "turkmen": "tk", "nynorsk": "nn", "maltese": "mt",
	"sanskrit": "sa", "luxembourgish": "lb", "myanmar": "my", "tibetan": "bo", "tagalog": "tl",
	"malagasy": "mg", "assamese": "as", "tatar": "tt", "hawaiian": "haw", "lingala": "ln",
	"hausa": "ha", "bashkir": "ba", "javanese": "jw", "sundanese": "su", "cantonese": "yue",
}

// whisperLanguageCode normalizes a reported language to a code: names
// are mapped, codes kept, anything else passed through lower-cased.
func whisperLanguageCode(lang string) string {
	l := strings.ToLower(strings.TrimSpace(lang))
	if code, ok := whisperLanguages[l]; ok {
		return code
	}
	return l
}
