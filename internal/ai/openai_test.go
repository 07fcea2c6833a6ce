package ai_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/ai"
	"github.com/sluice-media/sluice/internal/ai/aitest"
)

// remoteTestKey is the API key the provider tests configure; no error
// may ever show it.
const remoteTestKey = "sk-test-7Hq2vN9xK4pL1mR8sT3wY6zB"

func newOpenAIPair(t *testing.T, opts aitest.OpenAIOptions, models map[ai.Task]string) (*ai.OpenAI, *aitest.OpenAI) {
	t.Helper()
	if opts.APIKey == "" {
		opts.APIKey = remoteTestKey
	}
	fake := aitest.NewOpenAI(t, opts)
	p, err := ai.NewOpenAI(ai.ProviderConfig{Name: "openai", Type: "openai", BaseURL: fake.BaseURL(), APIKey: remoteTestKey, Models: models})
	if err != nil {
		t.Fatalf("NewOpenAI: %v", err)
	}
	return p, fake
}

// remoteTestJPEG and remoteTestPNG encode small real images, different
// for each shade.
func remoteTestJPEG(t *testing.T, shade uint8) ai.Image {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, remoteTestPicture(shade), &jpeg.Options{Quality: 80}); err != nil {
		t.Fatal(err)
	}
	return ai.Image{Data: b.Bytes(), ContentType: "image/jpeg"}
}

func remoteTestPNG(t *testing.T, shade uint8) ai.Image {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, remoteTestPicture(shade)); err != nil {
		t.Fatal(err)
	}
	// No ContentType: providers must sniff it.
	return ai.Image{Data: b.Bytes()}
}

func remoteTestPicture(shade uint8) image.Image {
	img := image.NewRGBA(image.Rect(0, 0, 32, 24))
	for y := range 24 {
		for x := range 32 {
			img.Set(x, y, color.RGBA{shade, uint8(x * 8), uint8(y * 10), 255})
		}
	}
	return img
}

// remoteTestWAV is a second of 16 kHz mono silence as a WAV file.
func remoteTestWAV() []byte {
	const rate, n = 16000, 16000
	var b bytes.Buffer
	b.WriteString("RIFF")
	binary.Write(&b, binary.LittleEndian, uint32(36+2*n))
	b.WriteString("WAVEfmt ")
	binary.Write(&b, binary.LittleEndian, []any{uint32(16), uint16(1), uint16(1), uint32(rate), uint32(2 * rate), uint16(2), uint16(16)})
	b.WriteString("data")
	binary.Write(&b, binary.LittleEndian, uint32(2*n))
	b.Write(make([]byte, 2*n))
	return b.Bytes()
}

// requireProviderError checks that err is a *ProviderError from
// provider that does not show the key, and returns it.
func requireProviderError(t *testing.T, err error, provider string) *ai.ProviderError {
	t.Helper()
	if err == nil {
		t.Fatal("got no error, want one")
	}
	if strings.Contains(err.Error(), remoteTestKey) || strings.Contains(err.Error(), remoteTestKey[8:]) {
		t.Fatalf("error shows the API key: %v", err)
	}
	var pe *ai.ProviderError
	if !errors.As(err, &pe) {
		t.Fatalf("got %T (%v), want a *ai.ProviderError", err, err)
	}
	if pe.Provider != provider {
		t.Errorf("got provider %q, want %q", pe.Provider, provider)
	}
	return pe
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-3 }

func TestOpenAITranscribe(t *testing.T) {
	p, fake := newOpenAIPair(t, aitest.OpenAIOptions{}, nil)
	audio := remoteTestWAV()
	tr, u, err := p.Transcribe(context.Background(), ai.TranscribeRequest{
		Audio: audio, Filename: "chunk-003.wav", Prompt: "Sluice, HLS.", Duration: 6,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := aitest.SampleTranscript()
	if tr.Language != "en" {
		t.Errorf("got language %q, want en (from Whisper's \"english\")", tr.Language)
	}
	if tr.Text != want.Text() {
		t.Errorf("got text %q, want %q", tr.Text, want.Text())
	}
	if len(tr.Segments) != len(want.Segments) {
		t.Fatalf("got %d segments, want %d", len(tr.Segments), len(want.Segments))
	}
	for i, s := range tr.Segments {
		w := want.Segments[i]
		if !near(s.Start, w.Start) || !near(s.End, w.End) || s.Text != w.Text {
			t.Errorf("segment %d: got %+v, want %+v", i, s, w)
		}
	}
	// OpenAI bills whole seconds, and says so in usage.
	if u.AudioSeconds != math.Ceil(want.Duration) {
		t.Errorf("got %v audio seconds, want %v", u.AudioSeconds, math.Ceil(want.Duration))
	}

	rec := fake.LastRequest()
	if got := rec.Header.Get("Authorization"); got != "Bearer "+remoteTestKey {
		t.Errorf("got Authorization %q", got)
	}
	file := rec.Files["file"]
	if file.Filename != "chunk-003.wav" || file.ContentType != "audio/wav" || !bytes.Equal(file.Data, audio) {
		t.Errorf("got file %q (%s, %d bytes), want chunk-003.wav (audio/wav, %d bytes)", file.Filename, file.ContentType, len(file.Data), len(audio))
	}
	wantForm := map[string][]string{
		"model":                     {"whisper-1"},
		"response_format":           {"verbose_json"},
		"timestamp_granularities[]": {"segment"},
		"prompt":                    {"Sluice, HLS."},
	}
	if !reflect.DeepEqual(rec.Form, wantForm) {
		t.Errorf("got form %v, want %v", rec.Form, wantForm)
	}

	t.Run("language", func(t *testing.T) {
		tr, _, err := p.Transcribe(context.Background(), ai.TranscribeRequest{Audio: audio, Filename: "a.flac", Language: "de"})
		if err != nil {
			t.Fatal(err)
		}
		rec := fake.LastRequest()
		if got := rec.Form["language"]; !reflect.DeepEqual(got, []string{"de"}) {
			t.Errorf("got language field %v, want [de]", got)
		}
		if got := rec.Files["file"].ContentType; got != "audio/flac" {
			t.Errorf("got file type %q, want audio/flac", got)
		}
		if tr.Language != "de" {
			t.Errorf("got language %q, want de (from \"german\")", tr.Language)
		}
	})

	t.Run("plain json answer", func(t *testing.T) {
		// Servers and models without verbose_json (gpt-4o-transcribe,
		// some local servers) answer {"text"}: one segment over the audio.
		fake.Fail(1, aitest.Fault{Body: `{"text":"  Hello there.  "}`})
		tr, u, err := p.Transcribe(context.Background(), ai.TranscribeRequest{Audio: audio, Filename: "a.wav", Language: "en", Duration: 4.5})
		if err != nil {
			t.Fatal(err)
		}
		want := ai.Transcript{Language: "en", Text: "Hello there.", Segments: []ai.Segment{{Start: 0, End: 4.5, Text: "Hello there."}}}
		if !reflect.DeepEqual(tr, want) {
			t.Errorf("got %+v, want %+v", tr, want)
		}
		if u.AudioSeconds != 4.5 {
			t.Errorf("got %v audio seconds, want 4.5 from the request", u.AudioSeconds)
		}
	})
}

func TestOpenAIDescribe(t *testing.T) {
	p, fake := newOpenAIPair(t, aitest.OpenAIOptions{}, nil)
	imgs := []ai.Image{remoteTestJPEG(t, 10), remoteTestPNG(t, 200)}
	d, u, err := p.Describe(context.Background(), ai.DescribeRequest{Images: imgs})
	if err != nil {
		t.Fatal(err)
	}
	if d.Text != aitest.SampleDescription {
		t.Errorf("got %q, want %q", d.Text, aitest.SampleDescription)
	}
	rec := fake.LastRequest()
	want := ai.Usage{Images: 2, InputTokens: rec.PromptTokens, OutputTokens: rec.CompletionTokens}
	if u != want || u.InputTokens == 0 {
		t.Errorf("got usage %+v, want %+v", u, want)
	}
	if rec.Model != "gpt-4o-mini" {
		t.Errorf("got model %q", rec.Model)
	}
	if len(rec.Images) != 2 || !bytes.Equal(rec.Images[0], imgs[0].Data) || !bytes.Equal(rec.Images[1], imgs[1].Data) {
		t.Errorf("the fake got %d images, not the two sent in order", len(rec.Images))
	}
	body := rec.JSON.(map[string]any)
	parts := body["messages"].([]any)[0].(map[string]any)["content"].([]any)
	for i, mime := range []string{"image/jpeg", "image/png"} {
		url := parts[i+1].(map[string]any)["image_url"].(map[string]any)["url"].(string)
		if prefix := "data:" + mime + ";base64,"; !strings.HasPrefix(url, prefix) {
			t.Errorf("image %d: got URL %.40q, want a %s data URL", i, url, mime)
		}
	}
	if body["max_tokens"] != float64(200) {
		t.Errorf("got max_tokens %v, want the default 200", body["max_tokens"])
	}
}

func TestOpenAISummarize(t *testing.T) {
	// A local server (Ollama, llama.cpp) serves models by its own names.
	p, fake := newOpenAIPair(t, aitest.OpenAIOptions{}, map[ai.Task]string{ai.TaskSummarize: "llama3.1:8b"})
	if got := p.Model(ai.TaskSummarize); got != "llama3.1:8b" {
		t.Fatalf("got model %q", got)
	}
	text := aitest.SampleTranscript().Text()
	s, u, err := p.Summarize(context.Background(), ai.SummarizeRequest{Text: text, MaxTokens: 120})
	if err != nil {
		t.Fatal(err)
	}
	if s.Text != aitest.SampleSummary {
		t.Errorf("got %q", s.Text)
	}
	rec := fake.LastRequest()
	if u.InputTokens != rec.PromptTokens || u.OutputTokens != rec.CompletionTokens || u.InputTokens == 0 {
		t.Errorf("got usage %+v, the fake billed %d+%d", u, rec.PromptTokens, rec.CompletionTokens)
	}
	body := rec.JSON.(map[string]any)
	msgs := body["messages"].([]any)
	if len(msgs) != 2 || msgs[0].(map[string]any)["role"] != "system" || msgs[1].(map[string]any)["content"] != text {
		t.Errorf("got messages %v, want a system prompt and the text", msgs)
	}
	if body["model"] != "llama3.1:8b" || body["max_tokens"] != float64(120) {
		t.Errorf("got model %v, max_tokens %v", body["model"], body["max_tokens"])
	}
}

func TestOpenAITag(t *testing.T) {
	p, fake := newOpenAIPair(t, aitest.OpenAIOptions{}, nil)
	labels, u, err := p.Tag(context.Background(), ai.TagRequest{Image: remoteTestJPEG(t, 50), TopK: 2})
	if err != nil {
		t.Fatal(err)
	}
	want := []ai.Label{{Name: "golden retriever", Score: 0.91}, {Name: "tennis ball", Score: 0.62}}
	if !reflect.DeepEqual(labels, want) {
		t.Errorf("got %v, want %v", labels, want)
	}
	if u.Images != 1 || u.InputTokens == 0 {
		t.Errorf("got usage %+v", u)
	}
	rf := fake.LastRequest().JSON.(map[string]any)["response_format"]
	if !reflect.DeepEqual(rf, map[string]any{"type": "json_object"}) {
		t.Errorf("got response_format %v, want json_object", rf)
	}
}

func TestOpenAITagLooseAnswers(t *testing.T) {
	p, fake := newOpenAIPair(t, aitest.OpenAIOptions{}, nil)
	cases := []struct {
		name, answer string
		want         []ai.Label
	}{
		{"code fence", "```json\n{\"labels\":[{\"name\":\"Cat\",\"score\":0.8},{\"name\":\"sofa\",\"score\":0.95}]}\n```",
			[]ai.Label{{"sofa", 0.95}, {"cat", 0.8}}},
		{"bare array, other keys", `[{"label":"dog","confidence":"0.7"},{"tag":"park","probability":0.4}]`,
			[]ai.Label{{"dog", 0.7}, {"park", 0.4}}},
		{"percentages", `{"tags":[{"name":"beach","score":92},{"name":"sea","score":"55%"}]}`,
			[]ai.Label{{"beach", 0.92}, {"sea", 0.55}}},
		{"out of range, duplicates", `{"labels":[{"name":"car","score":-3},{"name":"Car","score":0.9},{"name":"road","score":250}]}`,
			[]ai.Label{{"road", 1}, {"car", 0}}},
		{"strings", `Here you go: {"labels": ["tree", "sky"]} Hope it helps.`,
			[]ai.Label{{"tree", 0.5}, {"sky", 0.5}}},
		{"map", `{"mountain": 0.9, "snow": 0.6}`,
			[]ai.Label{{"mountain", 0.9}, {"snow", 0.6}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fake.SetChatContent(c.answer)
			got, _, err := p.Tag(context.Background(), ai.TagRequest{Image: remoteTestPNG(t, 1)})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %v, want %v", got, c.want)
			}
		})
	}
	for _, answer := range []string{"I see a cat on a sofa.", `{"labels": []}`, `{"labels": [{"name": "cat"`} {
		t.Run("unusable "+answer, func(t *testing.T) {
			fake.SetChatContent(answer)
			_, _, err := p.Tag(context.Background(), ai.TagRequest{Image: remoteTestPNG(t, 1)})
			pe := requireProviderError(t, err, "openai")
			if !pe.Temporary || pe.Status != http.StatusOK {
				t.Errorf("got %+v, want a temporary malformed-answer error", pe)
			}
		})
	}
}

func TestOpenAIModerate(t *testing.T) {
	bad := remoteTestJPEG(t, 255)
	p, fake := newOpenAIPair(t, aitest.OpenAIOptions{
		Moderate: func(text string, images [][]byte) map[string]float64 {
			scores := map[string]float64{"violence": 0.02}
			if strings.Contains(text, "hate") {
				scores["hate"] = 0.7
			}
			for _, img := range images {
				if bytes.Equal(img, bad.Data) {
					scores["violence"] = 0.93
				}
			}
			return scores
		},
	}, nil)

	m, u, err := p.Moderate(context.Background(), ai.ModerateRequest{Text: "a caption", Images: []ai.Image{remoteTestJPEG(t, 0), bad}})
	if err != nil {
		t.Fatal(err)
	}
	if !m.Flagged || m.Categories["violence"] != 0.93 {
		t.Errorf("got flagged %v, violence %v; want flagged by the second image at 0.93", m.Flagged, m.Categories["violence"])
	}
	if len(m.Categories) != 13 {
		t.Errorf("got %d categories, want omni-moderation's 13", len(m.Categories))
	}
	for c, s := range m.Categories {
		if s < 0 || s > 1 {
			t.Errorf("category %s: score %v outside [0, 1]", c, s)
		}
	}
	if u.Images != 2 {
		t.Errorf("got usage %+v, want 2 images", u)
	}
	reqs := fake.Requests()
	if len(reqs) != 2 {
		t.Fatalf("got %d calls, want one per image", len(reqs))
	}
	first := reqs[0].JSON.(map[string]any)
	if first["model"] != "omni-moderation-latest" {
		t.Errorf("got model %v", first["model"])
	}
	if parts := first["input"].([]any); len(parts) != 2 || parts[0].(map[string]any)["text"] != "a caption" {
		t.Errorf("got first input %v, want the text and the first image", parts)
	}

	t.Run("text only", func(t *testing.T) {
		m, _, err := p.Moderate(context.Background(), ai.ModerateRequest{Text: "some hate speech"})
		if err != nil {
			t.Fatal(err)
		}
		if !m.Flagged || m.Categories["hate"] != 0.7 {
			t.Errorf("got %+v, want flagged for hate", m)
		}
		if in := fake.LastRequest().JSON.(map[string]any)["input"]; in != "some hate speech" {
			t.Errorf("got input %v, want the text as a string", in)
		}
		m, _, err = p.Moderate(context.Background(), ai.ModerateRequest{Text: "a kind word"})
		if err != nil || m.Flagged {
			t.Errorf("got %+v, %v; want not flagged", m, err)
		}
	})
}

// openAICalls runs each of the provider's tasks once.
func openAICalls(t *testing.T) map[string]func(context.Context, *ai.OpenAI) error {
	img := remoteTestJPEG(t, 90)
	audio := remoteTestWAV()
	return map[string]func(context.Context, *ai.OpenAI) error{
		"transcribe": func(ctx context.Context, p *ai.OpenAI) error {
			_, _, err := p.Transcribe(ctx, ai.TranscribeRequest{Audio: audio, Filename: "a.wav"})
			return err
		},
		"describe": func(ctx context.Context, p *ai.OpenAI) error {
			_, _, err := p.Describe(ctx, ai.DescribeRequest{Images: []ai.Image{img}})
			return err
		},
		"summarize": func(ctx context.Context, p *ai.OpenAI) error {
			_, _, err := p.Summarize(ctx, ai.SummarizeRequest{Text: "hello"})
			return err
		},
		"tag": func(ctx context.Context, p *ai.OpenAI) error {
			_, _, err := p.Tag(ctx, ai.TagRequest{Image: img})
			return err
		},
		"moderate": func(ctx context.Context, p *ai.OpenAI) error {
			_, _, err := p.Moderate(ctx, ai.ModerateRequest{Text: "hello", Images: []ai.Image{img}})
			return err
		},
	}
}

func TestOpenAIErrors(t *testing.T) {
	cases := []struct {
		name  string
		fault aitest.Fault
		check func(t *testing.T, pe *ai.ProviderError)
	}{
		{"envelope 400", aitest.Fault{Status: 400, Code: "invalid_value", Message: "Invalid value for 'model'."},
			func(t *testing.T, pe *ai.ProviderError) {
				if pe.Status != 400 || pe.Code != "invalid_value" || pe.Message != "Invalid value for 'model'." || pe.Temporary {
					t.Errorf("got %+v, want a permanent 400 with the envelope's code and message", pe)
				}
			}},
		{"429 retry-after seconds", aitest.Fault{Status: 429, RetryAfter: "7"},
			func(t *testing.T, pe *ai.ProviderError) {
				if pe.Status != 429 || !pe.Temporary || pe.RetryAfter != 7*time.Second || pe.Code != "rate_limit_exceeded" {
					t.Errorf("got %+v, want a temporary 429 asking for 7s", pe)
				}
			}},
		{"429 retry-after date", aitest.Fault{Status: 429, RetryAfter: aitest.RetryAfterDate(90 * time.Second)},
			func(t *testing.T, pe *ai.ProviderError) {
				// HTTP dates have whole seconds: the wait is at most 90 s
				// and (the test taking well under a minute) more than 30.
				if !pe.Temporary || pe.RetryAfter <= 30*time.Second || pe.RetryAfter > 90*time.Second {
					t.Errorf("got %+v, want a temporary 429 asking for about 90s", pe)
				}
			}},
		{"500", aitest.Fault{Status: 500},
			func(t *testing.T, pe *ai.ProviderError) {
				if pe.Status != 500 || !pe.Temporary || pe.Code != "server_error" {
					t.Errorf("got %+v, want a temporary 500", pe)
				}
			}},
		{"503", aitest.Fault{Status: 503, RetryAfter: "2"},
			func(t *testing.T, pe *ai.ProviderError) {
				if pe.Status != 503 || !pe.Temporary || pe.RetryAfter != 2*time.Second {
					t.Errorf("got %+v, want a temporary 503 asking for 2s", pe)
				}
			}},
		{"502 page from a proxy", aitest.Fault{Status: 502, Body: "<html><body>Bad gateway</body></html>"},
			func(t *testing.T, pe *ai.ProviderError) {
				if pe.Status != 502 || !pe.Temporary || !strings.Contains(pe.Message, "Bad gateway") {
					t.Errorf("got %+v, want a temporary 502 quoting the page", pe)
				}
			}},
		{"malformed JSON", aitest.Fault{Malformed: true},
			func(t *testing.T, pe *ai.ProviderError) {
				if pe.Status != 200 || !pe.Temporary || !strings.Contains(pe.Message, "malformed") {
					t.Errorf("got %+v, want a temporary malformed-response error", pe)
				}
			}},
		{"truncated body", aitest.Fault{Truncated: true},
			func(t *testing.T, pe *ai.ProviderError) {
				if !pe.Temporary {
					t.Errorf("got %+v, want a temporary error", pe)
				}
			}},
		{"ollama error", aitest.Fault{Status: 404, Body: `{"error":"model \"llava\" not found, try pulling it first"}`},
			func(t *testing.T, pe *ai.ProviderError) {
				if pe.Status != 404 || pe.Temporary || pe.Message != `model "llava" not found, try pulling it first` {
					t.Errorf("got %+v, want a permanent 404 with Ollama's message", pe)
				}
			}},
		{"llama.cpp error", aitest.Fault{Status: 400, Body: `{"error":{"code":400,"message":"the request exceeds the available context size","type":"exceed_context_size_error"}}`},
			func(t *testing.T, pe *ai.ProviderError) {
				if pe.Code != "400" || pe.Temporary || pe.Message != "the request exceeds the available context size" {
					t.Errorf("got %+v, want llama.cpp's numeric code and message", pe)
				}
			}},
	}
	p, fake := newOpenAIPair(t, aitest.OpenAIOptions{}, nil)
	for task, call := range openAICalls(t) {
		for _, c := range cases {
			t.Run(task+"/"+c.name, func(t *testing.T) {
				before := fake.Calls()
				fake.Fail(1, c.fault)
				err := call(context.Background(), p)
				c.check(t, requireProviderError(t, err, "openai"))
				if fake.Calls() != before+1 {
					t.Errorf("got %d calls, want 1 (retrying is the gateway's job)", fake.Calls()-before)
				}
			})
		}
	}
}

func TestOpenAIUnauthorized(t *testing.T) {
	// The fake quotes the key it got in full; the provider must not.
	fake := aitest.NewOpenAI(t, aitest.OpenAIOptions{APIKey: "sk-the-right-one-0000000000", EchoKey: true})
	p, err := ai.NewOpenAI(ai.ProviderConfig{BaseURL: fake.BaseURL(), APIKey: remoteTestKey})
	if err != nil {
		t.Fatal(err)
	}
	for task, call := range openAICalls(t) {
		t.Run(task, func(t *testing.T) {
			pe := requireProviderError(t, call(context.Background(), p), "openai")
			if pe.Status != 401 || pe.Temporary || pe.Code != "invalid_api_key" {
				t.Errorf("got %+v, want a permanent 401 invalid_api_key", pe)
			}
			if !strings.Contains(pe.Message, "[redacted]") {
				t.Errorf("got message %q, want the echoed key redacted", pe.Message)
			}
		})
	}
}

func TestOpenAISlowServer(t *testing.T) {
	// The fake never answers: each call must end with its context. (A
	// provider that ignored ctx would hang here until the test binary's
	// timeout, failing it.)
	p, fake := newOpenAIPair(t, aitest.OpenAIOptions{}, nil)
	for task, call := range openAICalls(t) {
		t.Run(task, func(t *testing.T) {
			fake.Fail(1, aitest.Fault{Hang: true})
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			err := call(ctx, p)
			pe := requireProviderError(t, err, "openai")
			if !pe.Temporary || !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("got %v (%+v), want a temporary error that is context.DeadlineExceeded", err, pe)
			}
		})
	}
	t.Run("latency", func(t *testing.T) {
		fake.SetLatency(time.Hour)
		defer fake.SetLatency(0)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, _, err := p.Summarize(ctx, ai.SummarizeRequest{Text: "hello"})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("got %v, want context.DeadlineExceeded", err)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		fake.Fail(1, aitest.Fault{Hang: true})
		ctx, cancel := context.WithCancel(context.Background())
		before := fake.CallsTo("chat")
		go func() {
			// Cancel once the call is in the fake, hanging.
			for fake.CallsTo("chat") == before {
				time.Sleep(time.Millisecond)
			}
			cancel()
		}()
		_, _, err := p.Summarize(ctx, ai.SummarizeRequest{Text: "hello"})
		pe := requireProviderError(t, err, "openai")
		if pe.Temporary || !errors.Is(err, context.Canceled) {
			t.Errorf("got %+v, want a permanent error that is context.Canceled: the caller gave up", pe)
		}
	})
}

func TestOpenAIConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p, err := ai.NewOpenAI(ai.ProviderConfig{Name: "local", BaseURL: "http://" + addr + "/v1", APIKey: remoteTestKey})
	if err != nil {
		t.Fatal(err)
	}
	for task, call := range openAICalls(t) {
		t.Run(task, func(t *testing.T) {
			pe := requireProviderError(t, call(context.Background(), p), "local")
			if !pe.Temporary || pe.Status != 0 {
				t.Errorf("got %+v, want a temporary error without status", pe)
			}
		})
	}
}

func TestOpenAIResponseTooLarge(t *testing.T) {
	p, fake := newOpenAIPair(t, aitest.OpenAIOptions{}, nil)
	huge := `{"text":"` + strings.Repeat("a", 17<<20) + `"}`
	fake.Fail(1, aitest.Fault{Body: huge})
	_, _, err := p.Transcribe(context.Background(), ai.TranscribeRequest{Audio: remoteTestWAV(), Filename: "a.wav"})
	pe := requireProviderError(t, err, "openai")
	if pe.Temporary || !strings.Contains(pe.Message, "larger than") {
		t.Errorf("got %+v, want a permanent too-large error", pe)
	}
}

func TestOpenAIConfig(t *testing.T) {
	ctx := context.Background()
	official, err := ai.NewOpenAI(ai.ProviderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := official.Available(ctx); !errors.Is(err, ai.ErrUnavailable) {
		t.Errorf("OpenAI without a key: got %v, want ErrUnavailable", err)
	}
	if official.Name() != "openai" {
		t.Errorf("got name %q", official.Name())
	}
	withKey, _ := ai.NewOpenAI(ai.ProviderConfig{APIKey: remoteTestKey})
	if err := withKey.Available(ctx); err != nil {
		t.Errorf("OpenAI with a key: got %v", err)
	}
	local, _ := ai.NewOpenAI(ai.ProviderConfig{Name: "whisper-cpp", BaseURL: "http://127.0.0.1:8080/v1/"})
	if err := local.Available(ctx); err != nil {
		t.Errorf("local server without a key: got %v, want available", err)
	}
	wantModels := map[ai.Task]string{
		ai.TaskTranscribe: "whisper-1", ai.TaskDescribe: "gpt-4o-mini", ai.TaskTag: "gpt-4o-mini",
		ai.TaskModerate: "omni-moderation-latest", ai.TaskSummarize: "gpt-4o-mini", ai.TaskOCR: "",
	}
	for task, want := range wantModels {
		if got := official.Model(task); got != want {
			t.Errorf("model for %s: got %q, want %q", task, got, want)
		}
	}
	for _, pc := range []ai.ProviderConfig{
		{BaseURL: "ftp://example.com/v1"},
		{BaseURL: "not a url"},
		{BaseURL: "https://user:" + remoteTestKey + "@example.com/v1"},
		{Models: map[ai.Task]string{ai.TaskOCR: "gpt-4o"}},
	} {
		_, err := ai.NewOpenAI(pc)
		if err == nil {
			t.Errorf("NewOpenAI(%+v): got no error", pc.Models)
		} else if strings.Contains(err.Error(), remoteTestKey) {
			t.Errorf("error shows the key: %v", err)
		}
	}
}

func TestOpenAIBadInput(t *testing.T) {
	p, fake := newOpenAIPair(t, aitest.OpenAIOptions{}, nil)
	ctx := context.Background()
	errs := []error{}
	_, _, err := p.Transcribe(ctx, ai.TranscribeRequest{})
	errs = append(errs, err)
	_, _, err = p.Describe(ctx, ai.DescribeRequest{})
	errs = append(errs, err)
	_, _, err = p.Tag(ctx, ai.TagRequest{})
	errs = append(errs, err)
	_, _, err = p.Moderate(ctx, ai.ModerateRequest{})
	errs = append(errs, err)
	_, _, err = p.Summarize(ctx, ai.SummarizeRequest{Text: "  "})
	errs = append(errs, err)
	for i, err := range errs {
		if err == nil {
			t.Errorf("call %d: got no error for an empty request", i)
		}
	}
	if fake.Calls() != 0 {
		t.Errorf("got %d calls for empty requests, want none", fake.Calls())
	}
	// An image declared as JPEG that is not one: the server refuses it,
	// and that is no reason to retry.
	_, _, err = p.Describe(ctx, ai.DescribeRequest{Images: []ai.Image{{Data: []byte("not an image"), ContentType: "image/jpeg"}}})
	pe := requireProviderError(t, err, "openai")
	if pe.Status != 400 || pe.Temporary {
		t.Errorf("got %+v, want a permanent 400", pe)
	}
}
