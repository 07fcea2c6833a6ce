package aitest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// OpenAIOptions set up a fake OpenAI server.
type OpenAIOptions struct {
	// APIKey, when set, is the bearer token every call must carry;
	// others get 401 in OpenAI's envelope.
	APIKey string
	// EchoKey makes 401 answers quote the token presented in full,
	// where OpenAI masks it, to test that providers keep keys out of
	// their errors.
	EchoKey bool
	// Transcript is what transcriptions return (default
	// SampleTranscript).
	Transcript *Transcript
	// Description answers chat completions with images, Summary those
	// without (defaults SampleDescription, SampleSummary).
	Description string
	Summary     string
	// Labels answer chat completions in JSON mode, as
	// {"labels":[{"name","score"}]} (default SampleLabels).
	Labels []Label
	// Moderate scores a moderation call's text and images by category
	// (default: every category near zero). A category scoring 0.5 or
	// more is flagged.
	Moderate func(text string, images [][]byte) map[string]float64
}

// OpenAI is a fake OpenAI API at URL + "/v1": POST /v1/audio/transcriptions,
// /v1/chat/completions and /v1/moderations.
type OpenAI struct {
	*httptest.Server
	*core
	opts OpenAIOptions

	mu          sync.Mutex
	chatContent *string
}

// NewOpenAI starts a fake OpenAI server, closed when the test ends.
func NewOpenAI(t testing.TB, opts OpenAIOptions) *OpenAI {
	s := &OpenAI{core: newCore(t), opts: opts}
	s.errorReply = openAIError
	s.auth = s.checkAuth
	mux := http.NewServeMux()
	fixed := func(name string) func(*http.Request) string { return func(*http.Request) string { return name } }
	mux.HandleFunc("POST /v1/audio/transcriptions", s.handle(fixed("transcriptions"), s.transcriptions))
	mux.HandleFunc("POST /v1/chat/completions", s.handle(fixed("chat"), s.chat))
	mux.HandleFunc("POST /v1/moderations", s.handle(fixed("moderations"), s.moderations))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		rep := openAIError(http.StatusNotFound, "unknown_url", fmt.Sprintf("Invalid URL (%s %s)", r.Method, r.URL.Path))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rep.status)
		w.Write(rep.body)
	})
	s.Server = s.start(mux)
	return s
}

// BaseURL is the base URL a provider is configured with.
func (s *OpenAI) BaseURL() string { return s.URL + "/v1" }

// SetChatContent makes chat completions answer with exactly content
// from now on, e.g. to feed a provider's parser odd model output.
func (s *OpenAI) SetChatContent(content string) {
	s.mu.Lock()
	s.chatContent = &content
	s.mu.Unlock()
}

func (s *OpenAI) checkAuth(r *http.Request) *reply {
	if s.opts.APIKey == "" {
		return nil
	}
	token, ok := bearer(r, s.opts.APIKey)
	if ok {
		return nil
	}
	if token == "" {
		rep := openAIError(http.StatusUnauthorized, "", "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
		return &rep
	}
	shown := maskKey(token)
	if s.opts.EchoKey {
		shown = token
	}
	rep := openAIError(http.StatusUnauthorized, "invalid_api_key", "Incorrect API key provided: "+shown+". You can find your API key at https://platform.openai.com/account/api-keys.")
	return &rep
}

// openAIError renders {"error":{"message","type","param","code"}} with
// OpenAI's usual wording for a status when code and message are empty.
func openAIError(status int, code, message string) reply {
	typ := "invalid_request_error"
	switch {
	case status == http.StatusTooManyRequests:
		typ = "requests"
		if code == "" && message == "" {
			code, message = "rate_limit_exceeded", "Rate limit reached for requests. Please try again in 20s."
		}
	case status == http.StatusServiceUnavailable:
		typ = "server_error"
		if message == "" {
			message = "The engine is currently overloaded, please try again later."
		}
	case status >= 500:
		typ = "server_error"
		if message == "" {
			message = "The server had an error while processing your request. Sorry about that!"
		}
	case status == http.StatusUnauthorized && message == "":
		code, message = "invalid_api_key", "Incorrect API key provided."
	case message == "":
		message = http.StatusText(status)
	}
	e := map[string]any{"message": message, "type": typ, "param": nil, "code": nil}
	if code != "" {
		e["code"] = code
	}
	return jsonReply(status, map[string]any{"error": e})
}

func jsonReply(status int, v any) reply {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return reply{status: status, header: http.Header{"Content-Type": {"application/json"}}, body: b}
}

func badRequest(param, message string) reply {
	rep := openAIError(http.StatusBadRequest, "", message)
	var env map[string]map[string]any
	json.Unmarshal(rep.body, &env)
	if param != "" {
		env["error"]["param"] = param
	}
	return jsonReply(http.StatusBadRequest, env)
}

var audioExts = []string{"flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm"}

func (s *OpenAI) transcriptions(r *http.Request, rec *Request) reply {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" {
		return badRequest("", "Invalid Content-Type header ("+r.Header.Get("Content-Type")+"), expected multipart/form-data.")
	}
	form, err := multipart.NewReader(bytes.NewReader(rec.Body), params["boundary"]).ReadForm(64 << 20)
	if err != nil {
		return badRequest("", "Could not parse multipart form: "+err.Error())
	}
	defer form.RemoveAll()
	rec.Form = form.Value
	rec.Files = map[string]File{}
	for name, fhs := range form.File {
		f, err := fhs[0].Open()
		if err != nil {
			return badRequest(name, err.Error())
		}
		data, _ := io.ReadAll(f)
		f.Close()
		rec.Files[name] = File{Filename: fhs[0].Filename, ContentType: fhs[0].Header.Get("Content-Type"), Data: data}
	}
	value := func(k string) string {
		if v := form.Value[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	rec.Model = value("model")
	file, ok := rec.Files["file"]
	switch {
	case rec.Model == "":
		return badRequest("model", "you must provide a model parameter")
	case !ok || len(file.Data) == 0:
		return badRequest("file", "Missing required parameter: 'file'.")
	}
	ext := strings.TrimPrefix(strings.ToLower(path.Ext(file.Filename)), ".")
	if !slices.Contains(audioExts, ext) {
		return badRequest("file", fmt.Sprintf("Invalid file format. Supported formats: ['%s']", strings.Join(audioExts, "', '")))
	}
	format := value("response_format")
	if format == "" {
		format = "json"
	}
	grains := form.Value["timestamp_granularities[]"]
	if len(grains) > 0 && format != "verbose_json" {
		return badRequest("timestamp_granularities", "timestamp_granularities requires response_format=verbose_json")
	}
	for _, g := range grains {
		if g != "segment" && g != "word" {
			return badRequest("timestamp_granularities", fmt.Sprintf("Invalid value: '%s'. Supported values are: 'word' and 'segment'.", g))
		}
	}

	tr := SampleTranscript()
	if s.opts.Transcript != nil {
		tr = *s.opts.Transcript
	}
	if lang := value("language"); lang != "" {
		tr.Language = lang
	}
	switch format {
	case "text":
		return reply{status: http.StatusOK, header: http.Header{"Content-Type": {"text/plain; charset=utf-8"}}, body: []byte(tr.Text() + "\n")}
	case "json":
		return jsonReply(http.StatusOK, map[string]any{"text": tr.Text()})
	case "verbose_json":
	default:
		return badRequest("response_format", fmt.Sprintf("Invalid value: '%s'. Supported values are: 'json', 'text' and 'verbose_json'.", format))
	}
	segs := make([]map[string]any, 0, len(tr.Segments))
	for i, sg := range tr.Segments {
		segs = append(segs, map[string]any{
			"id": i, "seek": 0, "start": sg.Start, "end": sg.End,
			// Whisper's segment text starts with a space.
			"text":   " " + sg.Text,
			"tokens": fakeTokens(sg.Text), "temperature": 0.0,
			"avg_logprob": -0.23, "compression_ratio": 1.31, "no_speech_prob": 0.012,
		})
	}
	return jsonReply(http.StatusOK, map[string]any{
		"task":     "transcribe",
		"language": languageName(tr.Language),
		"duration": tr.Duration,
		"text":     tr.Text(),
		"segments": segs,
		"usage":    map[string]any{"type": "duration", "seconds": math.Ceil(tr.Duration)},
	})
}

func (s *OpenAI) chat(r *http.Request, rec *Request) reply {
	var req struct {
		Model          string            `json:"model"`
		Messages       []json.RawMessage `json:"messages"`
		MaxTokens      *int              `json:"max_tokens"`
		ResponseFormat *struct {
			Type string `json:"type"`
		} `json:"response_format"`
	}
	if rep, ok := decodeJSON(r, rec, &req); !ok {
		return rep
	}
	rec.Model = req.Model
	switch {
	case req.Model == "":
		return badRequest("model", "you must provide a model parameter")
	case len(req.Messages) == 0:
		return badRequest("messages", "[] is too short - 'messages'")
	case req.MaxTokens != nil && *req.MaxTokens < 1:
		return badRequest("max_tokens", fmt.Sprintf("Invalid 'max_tokens': integer below minimum value. Expected a value >= 1, but got %d instead.", *req.MaxTokens))
	}
	var texts []string
	for i, raw := range req.Messages {
		var m struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		}
		if err := json.Unmarshal(raw, &m); err != nil {
			return badRequest(fmt.Sprintf("messages.[%d]", i), "Invalid message: "+err.Error())
		}
		if !slices.Contains([]string{"system", "developer", "user", "assistant", "tool"}, m.Role) {
			return badRequest(fmt.Sprintf("messages.[%d].role", i), fmt.Sprintf("Invalid value: '%s'. Supported values are: 'system', 'assistant', 'user', 'tool', 'developer'.", m.Role))
		}
		var str string
		if json.Unmarshal(m.Content, &str) == nil {
			texts = append(texts, str)
			continue
		}
		var parts []struct {
			Type     string `json:"type"`
			Text     string `json:"text"`
			ImageURL *struct {
				URL string `json:"url"`
			} `json:"image_url"`
		}
		if err := json.Unmarshal(m.Content, &parts); err != nil {
			return badRequest(fmt.Sprintf("messages.[%d].content", i), "Invalid content: expected a string or an array of content parts.")
		}
		for j, p := range parts {
			param := fmt.Sprintf("messages.[%d].content.[%d]", i, j)
			switch p.Type {
			case "text":
				texts = append(texts, p.Text)
			case "image_url":
				if p.ImageURL == nil {
					return badRequest(param+".image_url", "Missing required parameter: '"+param+".image_url'.")
				}
				if m.Role != "user" {
					return badRequest(param+".type", "Image URLs are only allowed for messages with role 'user'.")
				}
				img, err := decodeImageURL(p.ImageURL.URL)
				if err != nil {
					return badRequest(param+".image_url.url", err.Error())
				}
				rec.Images = append(rec.Images, img)
			default:
				return badRequest(param+".type", fmt.Sprintf("Invalid value: '%s'. Supported values are: 'text', 'image_url'.", p.Type))
			}
		}
	}
	jsonMode := req.ResponseFormat != nil && req.ResponseFormat.Type == "json_object"
	if jsonMode && !strings.Contains(strings.ToLower(strings.Join(texts, " ")), "json") {
		return badRequest("messages", "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.")
	}

	var content string
	switch {
	case jsonMode:
		labels := s.opts.Labels
		if labels == nil {
			labels = SampleLabels()
		}
		out := make([]map[string]any, 0, len(labels))
		for _, l := range labels {
			out = append(out, map[string]any{"name": l.Name, "score": l.Score})
		}
		b, _ := json.Marshal(map[string]any{"labels": out})
		content = string(b)
	case len(rec.Images) > 0:
		content = or(s.opts.Description, SampleDescription)
	default:
		content = or(s.opts.Summary, SampleSummary)
	}
	s.mu.Lock()
	if s.chatContent != nil {
		content = *s.chatContent
	}
	s.mu.Unlock()

	rec.PromptTokens = 7 + countTokens(strings.Join(texts, " ")) + 85*len(rec.Images)
	rec.CompletionTokens = countTokens(content)
	return jsonReply(http.StatusOK, map[string]any{
		"id":      fmt.Sprintf("chatcmpl-fake%08d", len(rec.Body)),
		"object":  "chat.completion",
		"created": time.Now().Unix(),
		"model":   req.Model,
		"choices": []map[string]any{{
			"index":         0,
			"message":       map[string]any{"role": "assistant", "content": content, "refusal": nil},
			"logprobs":      nil,
			"finish_reason": "stop",
		}},
		"usage": map[string]any{
			"prompt_tokens":     rec.PromptTokens,
			"completion_tokens": rec.CompletionTokens,
			"total_tokens":      rec.PromptTokens + rec.CompletionTokens,
		},
		"system_fingerprint": "fp_fake",
	})
}

// omniCategories are omni-moderation's categories, and the input types
// each applies to.
var omniCategories = map[string][]string{
	"harassment": {"text"}, "harassment/threatening": {"text"},
	"hate": {"text"}, "hate/threatening": {"text"},
	"illicit": {"text"}, "illicit/violent": {"text"},
	"self-harm": {"text", "image"}, "self-harm/intent": {"text", "image"}, "self-harm/instructions": {"text", "image"},
	"sexual": {"text", "image"}, "sexual/minors": {"text"},
	"violence": {"text", "image"}, "violence/graphic": {"text", "image"},
}

func (s *OpenAI) moderations(r *http.Request, rec *Request) reply {
	var req struct {
		Model string          `json:"model"`
		Input json.RawMessage `json:"input"`
	}
	if rep, ok := decodeJSON(r, rec, &req); !ok {
		return rep
	}
	if req.Model == "" {
		req.Model = "omni-moderation-latest"
	}
	rec.Model = req.Model
	var texts []string
	var one string
	var many []string
	var parts []struct {
		Type     string `json:"type"`
		Text     string `json:"text"`
		ImageURL *struct {
			URL string `json:"url"`
		} `json:"image_url"`
	}
	switch {
	case len(req.Input) == 0 || string(req.Input) == "null":
		return badRequest("input", "Missing required parameter: 'input'.")
	case json.Unmarshal(req.Input, &one) == nil:
		texts = []string{one}
	case json.Unmarshal(req.Input, &many) == nil:
		texts = many
	case json.Unmarshal(req.Input, &parts) == nil:
		for i, p := range parts {
			param := fmt.Sprintf("input.[%d]", i)
			switch {
			case p.Type == "text":
				texts = append(texts, p.Text)
			case p.Type == "image_url" && p.ImageURL != nil:
				if strings.HasPrefix(req.Model, "text-moderation") {
					return badRequest(param, "Model '"+req.Model+"' does not support image inputs.")
				}
				img, err := decodeImageURL(p.ImageURL.URL)
				if err != nil {
					return badRequest(param+".image_url.url", err.Error())
				}
				rec.Images = append(rec.Images, img)
			default:
				return badRequest(param+".type", fmt.Sprintf("Invalid value: '%s'. Supported values are: 'text' and 'image_url'.", p.Type))
			}
		}
	default:
		return badRequest("input", "Invalid type for 'input': expected a string, an array of strings or an array of objects.")
	}
	// Providers send one image per call (see ai.OpenAI.Moderate); the
	// fake holds them to it.
	if len(rec.Images) > 1 {
		return badRequest("input", "Only one image can be moderated per request.")
	}
	text := strings.Join(texts, "\n")
	scores := map[string]float64{}
	for c := range omniCategories {
		scores[c] = 1.2e-6
	}
	if s.opts.Moderate != nil {
		for c, v := range s.opts.Moderate(text, rec.Images) {
			scores[c] = v
		}
	}
	flags := map[string]bool{}
	applied := map[string][]string{}
	flagged := false
	for c, v := range scores {
		flags[c] = v >= 0.5
		flagged = flagged || flags[c]
		applied[c] = filterTypes(omniCategories[c], len(rec.Images) > 0, text != "")
	}
	return jsonReply(http.StatusOK, map[string]any{
		"id":    fmt.Sprintf("modr-fake%06d", len(rec.Body)),
		"model": req.Model,
		"results": []map[string]any{{
			"flagged":                      flagged,
			"categories":                   flags,
			"category_scores":              scores,
			"category_applied_input_types": applied,
		}},
	})
}

func filterTypes(types []string, image, text bool) []string {
	out := []string{}
	for _, t := range types {
		if (t == "image" && image) || (t == "text" && text) {
			out = append(out, t)
		}
	}
	return out
}

// decodeJSON reads a JSON request body into v, answering 400 in
// OpenAI's envelope when it is not JSON.
func decodeJSON(r *http.Request, rec *Request, v any) (reply, bool) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		return badRequest("", "Invalid Content-Type header ("+r.Header.Get("Content-Type")+"), expected application/json."), false
	}
	var generic any
	if err := json.Unmarshal(rec.Body, &generic); err != nil {
		return badRequest("", "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly.)"), false
	}
	rec.JSON = generic
	if err := json.Unmarshal(rec.Body, v); err != nil {
		return badRequest("", "Invalid request body: "+err.Error()), false
	}
	return reply{}, true
}

// decodeImageURL accepts what OpenAI accepts inline: a base64 data URL
// of a JPEG, PNG, GIF or WebP image. (Remote URLs would make the fake
// fetch them; providers here always inline.)
func decodeImageURL(u string) ([]byte, error) {
	rest, ok := strings.CutPrefix(u, "data:")
	if !ok {
		return nil, fmt.Errorf("Invalid image URL: expected a base64-encoded data URL with an image MIME type (e.g. 'data:image/png;base64,...'), got %.40q", u)
	}
	meta, data, ok := strings.Cut(rest, ",")
	mt, enc, _ := strings.Cut(meta, ";")
	if !ok || enc != "base64" {
		return nil, fmt.Errorf("Invalid image URL: expected base64 data")
	}
	if !slices.Contains([]string{"image/jpeg", "image/png", "image/gif", "image/webp"}, mt) {
		return nil, fmt.Errorf("Invalid MIME type %q. Only image types are supported.", mt)
	}
	img, err := base64.StdEncoding.DecodeString(data)
	if err != nil {
		return nil, fmt.Errorf("Invalid base64 image data: %v", err)
	}
	if sniffed := http.DetectContentType(img); sniffed != mt {
		return nil, fmt.Errorf("You uploaded an unsupported image. The data is %s, declared as %s.", sniffed, mt)
	}
	return img, nil
}

// languageName reports a language as Whisper's verbose_json does: by
// its English name.
func languageName(code string) string {
	names := map[string]string{
		"en": "english", "de": "german", "fr": "french", "es": "spanish", "it": "italian",
		"pt": "portuguese", "nl": "dutch", "ja": "japanese", "zh": "chinese", "ru": "russian",
	}
	if n, ok := names[code]; ok {
		return n
	}
	return code
}

// countTokens is the fake's tokenizer: about four characters a token.
func countTokens(s string) int { return (len(s) + 3) / 4 }

func fakeTokens(s string) []int {
	out := make([]int, 0, countTokens(s))
	for i := range countTokens(s) {
		out = append(out, 50364+i)
	}
	return out
}

func or(s, def string) string {
	if s != "" {
		return s
	}
	return def
}
