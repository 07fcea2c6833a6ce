package ai_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/ai"
	"github.com/sluice-media/sluice/internal/ai/aitest"
)

func newWorkersAIPair(t *testing.T, opts aitest.WorkersAIOptions, models map[ai.Task]string) (*ai.WorkersAI, *aitest.WorkersAI) {
	t.Helper()
	if opts.APIKey == "" {
		opts.APIKey = remoteTestKey
	}
	fake := aitest.NewWorkersAI(t, opts)
	p, err := ai.NewWorkersAI(ai.ProviderConfig{
		Name: "workers-ai", Type: "workers-ai", BaseURL: fake.BaseURL(),
		APIKey: remoteTestKey, AccountID: aitest.DefaultAccountID, Models: models,
	})
	if err != nil {
		t.Fatalf("NewWorkersAI: %v", err)
	}
	return p, fake
}

// jsonByteArray reads a JSON array of byte values, as the fake decoded it.
func jsonByteArray(t *testing.T, v any) []byte {
	t.Helper()
	arr, ok := v.([]any)
	if !ok {
		t.Fatalf("got %T, want an array of bytes", v)
	}
	out := make([]byte, len(arr))
	for i, x := range arr {
		out[i] = byte(x.(float64))
	}
	return out
}

func checkSegments(t *testing.T, got []ai.Segment, want []aitest.Segment) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d segments %+v, want %d", len(got), got, len(want))
	}
	for i, s := range got {
		w := want[i]
		if !near(s.Start, w.Start) || !near(s.End, w.End) || s.Text != w.Text {
			t.Errorf("segment %d: got %+v, want %+v", i, s, w)
		}
	}
}

func TestWorkersAITranscribeTurbo(t *testing.T) {
	p, fake := newWorkersAIPair(t, aitest.WorkersAIOptions{}, nil)
	audio := remoteTestWAV()
	tr, u, err := p.Transcribe(context.Background(), ai.TranscribeRequest{
		Audio: audio, Filename: "chunk-000.wav", Language: "fr", Prompt: "Sluice", Duration: 6,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := aitest.SampleTranscript()
	if tr.Text != want.Text() || tr.Language != "fr" {
		t.Errorf("got text %q language %q, want %q fr", tr.Text, tr.Language, want.Text())
	}
	checkSegments(t, tr.Segments, want.Segments)
	if u.AudioSeconds != want.Duration {
		t.Errorf("got %v audio seconds, want %v from transcription_info", u.AudioSeconds, want.Duration)
	}

	rec := fake.LastRequest()
	if rec.Path != "/client/v4/accounts/"+aitest.DefaultAccountID+"/ai/run/@cf/openai/whisper-large-v3-turbo" {
		t.Errorf("got path %q", rec.Path)
	}
	if got := rec.Header.Get("Authorization"); got != "Bearer "+remoteTestKey {
		t.Errorf("got Authorization %q", got)
	}
	in := rec.JSON.(map[string]any)
	sent, err := base64.StdEncoding.DecodeString(in["audio"].(string))
	if err != nil || !bytes.Equal(sent, audio) {
		t.Errorf("audio field is not the audio in base64 (%v)", err)
	}
	if in["language"] != "fr" || in["initial_prompt"] != "Sluice" || in["task"] != "transcribe" {
		t.Errorf("got input %v", in)
	}
}

func TestWorkersAITranscribeWhisper(t *testing.T) {
	p, fake := newWorkersAIPair(t, aitest.WorkersAIOptions{}, map[ai.Task]string{ai.TaskTranscribe: "@cf/openai/whisper"})
	audio := remoteTestWAV()
	tr, u, err := p.Transcribe(context.Background(), ai.TranscribeRequest{Audio: audio, Filename: "a.wav", Language: "en", Duration: 6.2})
	if err != nil {
		t.Fatal(err)
	}
	// The model returns words: segments are rebuilt at sentence ends.
	want := aitest.SampleTranscript()
	checkSegments(t, tr.Segments, want.Segments)
	if tr.Text != want.Text() || tr.Language != "en" || u.AudioSeconds != 6.2 {
		t.Errorf("got %+v, %+v", tr, u)
	}
	rec := fake.LastRequest()
	if rec.Model != "@cf/openai/whisper" || !bytes.Equal(rec.Body, audio) || rec.Header.Get("Content-Type") != "application/octet-stream" {
		t.Errorf("got model %q, %d bytes of %s; want the raw file", rec.Model, len(rec.Body), rec.Header.Get("Content-Type"))
	}

	t.Run("words only", func(t *testing.T) {
		// Segments end at a sentence end or a pause of a second or more.
		fake.Fail(1, aitest.Fault{Body: `{"result":{"text":"Hi there. How are you ok","word_count":6,"words":[
			{"word":"Hi","start":0,"end":0.3},{"word":"there.","start":0.3,"end":0.8},
			{"word":"How","start":2.5,"end":2.7},{"word":"are","start":2.7,"end":2.9},{"word":"you","start":2.9,"end":3.2},
			{"word":"ok","start":5,"end":5.3}]},"success":true,"errors":[],"messages":[]}`})
		tr, _, err := p.Transcribe(context.Background(), ai.TranscribeRequest{Audio: audio, Filename: "a.wav"})
		if err != nil {
			t.Fatal(err)
		}
		checkSegments(t, tr.Segments, []aitest.Segment{
			{Start: 0, End: 0.8, Text: "Hi there."}, {Start: 2.5, End: 3.2, Text: "How are you"}, {Start: 5, End: 5.3, Text: "ok"},
		})
	})
	t.Run("vtt only", func(t *testing.T) {
		fake.Fail(1, aitest.Fault{Body: `{"result":{"text":"One. Two.","vtt":"WEBVTT\n\n00:00.000 --> 00:01.500\nOne.\n\n00:01.500 --> 00:03.250 align:start\nTwo.\n"},"success":true,"errors":[],"messages":[]}`})
		tr, _, err := p.Transcribe(context.Background(), ai.TranscribeRequest{Audio: audio, Filename: "a.wav"})
		if err != nil {
			t.Fatal(err)
		}
		checkSegments(t, tr.Segments, []aitest.Segment{{Start: 0, End: 1.5, Text: "One."}, {Start: 1.5, End: 3.25, Text: "Two."}})
	})
}

func TestWorkersAITag(t *testing.T) {
	labels := []aitest.Label{{Name: "tabby", Score: 0.2}, {Name: "egyptian cat", Score: 0.7}, {Name: "tiger cat", Score: 0.05}}
	p, fake := newWorkersAIPair(t, aitest.WorkersAIOptions{Labels: labels}, nil)
	img := remoteTestJPEG(t, 30)
	got, u, err := p.Tag(context.Background(), ai.TagRequest{Image: img, TopK: 2})
	if err != nil {
		t.Fatal(err)
	}
	want := []ai.Label{{Name: "egyptian cat", Score: 0.7}, {Name: "tabby", Score: 0.2}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if u.Images != 1 {
		t.Errorf("got usage %+v", u)
	}
	rec := fake.LastRequest()
	if rec.Model != "@cf/microsoft/resnet-50" || !bytes.Equal(rec.Body, img.Data) {
		t.Errorf("got model %q and %d bytes, want resnet-50 with the raw image", rec.Model, len(rec.Body))
	}
}

func TestWorkersAIDescribe(t *testing.T) {
	imgs := []ai.Image{remoteTestJPEG(t, 1), remoteTestPNG(t, 2)}
	t.Run("llava", func(t *testing.T) {
		p, fake := newWorkersAIPair(t, aitest.WorkersAIOptions{Description: "A cat on a mat."}, nil)
		d, u, err := p.Describe(context.Background(), ai.DescribeRequest{Images: imgs, MaxTokens: 80})
		if err != nil {
			t.Fatal(err)
		}
		// One image per call: each frame is described, in order.
		if d.Text != "A cat on a mat. A cat on a mat." || u.Images != 2 {
			t.Errorf("got %q, %+v", d.Text, u)
		}
		reqs := fake.Requests()
		if len(reqs) != 2 {
			t.Fatalf("got %d calls, want one per image", len(reqs))
		}
		for i, rec := range reqs {
			in := rec.JSON.(map[string]any)
			if rec.Model != "@cf/llava-hf/llava-1.5-7b-hf" || in["max_tokens"] != float64(80) || in["prompt"] == "" {
				t.Errorf("call %d: got model %q, input %v", i, rec.Model, in["max_tokens"])
			}
			if !bytes.Equal(jsonByteArray(t, in["image"]), imgs[i].Data) {
				t.Errorf("call %d: image field is not image %d as bytes", i, i)
			}
		}
	})
	t.Run("llama vision", func(t *testing.T) {
		p, fake := newWorkersAIPair(t, aitest.WorkersAIOptions{}, map[ai.Task]string{ai.TaskDescribe: "@cf/meta/llama-3.2-11b-vision-instruct"})
		d, u, err := p.Describe(context.Background(), ai.DescribeRequest{Images: imgs[:1], Prompt: "What is shown?"})
		if err != nil {
			t.Fatal(err)
		}
		rec := fake.LastRequest()
		if d.Text != aitest.SampleDescription {
			t.Errorf("got %q", d.Text)
		}
		want := ai.Usage{Images: 1, InputTokens: rec.PromptTokens, OutputTokens: rec.CompletionTokens}
		if u != want || u.InputTokens == 0 {
			t.Errorf("got usage %+v, want %+v", u, want)
		}
		if in := rec.JSON.(map[string]any); in["prompt"] != "What is shown?" {
			t.Errorf("got prompt %v", in["prompt"])
		}
	})
}

func TestWorkersAISummarize(t *testing.T) {
	p, fake := newWorkersAIPair(t, aitest.WorkersAIOptions{}, nil)
	text := aitest.SampleTranscript().Text()
	s, u, err := p.Summarize(context.Background(), ai.SummarizeRequest{Text: text})
	if err != nil {
		t.Fatal(err)
	}
	rec := fake.LastRequest()
	if s.Text != aitest.SampleSummary {
		t.Errorf("got %q", s.Text)
	}
	if u.InputTokens != rec.PromptTokens || u.OutputTokens != rec.CompletionTokens || u.OutputTokens == 0 {
		t.Errorf("got usage %+v, the fake billed %d+%d", u, rec.PromptTokens, rec.CompletionTokens)
	}
	msgs := rec.JSON.(map[string]any)["messages"].([]any)
	if rec.Model != "@cf/meta/llama-3.1-8b-instruct" || len(msgs) != 2 || msgs[1].(map[string]any)["content"] != text {
		t.Errorf("got model %q, messages %v", rec.Model, msgs)
	}
}

// workersAICalls runs each of the provider's tasks once.
func workersAICalls(t *testing.T) map[string]func(context.Context, *ai.WorkersAI) error {
	img := remoteTestJPEG(t, 90)
	audio := remoteTestWAV()
	return map[string]func(context.Context, *ai.WorkersAI) error{
		"transcribe": func(ctx context.Context, p *ai.WorkersAI) error {
			_, _, err := p.Transcribe(ctx, ai.TranscribeRequest{Audio: audio, Filename: "a.wav"})
			return err
		},
		"describe": func(ctx context.Context, p *ai.WorkersAI) error {
			_, _, err := p.Describe(ctx, ai.DescribeRequest{Images: []ai.Image{img}})
			return err
		},
		"summarize": func(ctx context.Context, p *ai.WorkersAI) error {
			_, _, err := p.Summarize(ctx, ai.SummarizeRequest{Text: "hello"})
			return err
		},
		"tag": func(ctx context.Context, p *ai.WorkersAI) error {
			_, _, err := p.Tag(ctx, ai.TagRequest{Image: img})
			return err
		},
	}
}

func TestWorkersAIErrors(t *testing.T) {
	cases := []struct {
		name  string
		fault aitest.Fault
		check func(t *testing.T, pe *ai.ProviderError)
	}{
		{"envelope 400", aitest.Fault{Status: 400, Code: "5007", Message: "No such model @cf/x/y or task"},
			func(t *testing.T, pe *ai.ProviderError) {
				if pe.Status != 400 || pe.Code != "5007" || pe.Message != "No such model @cf/x/y or task" || pe.Temporary {
					t.Errorf("got %+v, want a permanent 400 with code 5007", pe)
				}
			}},
		{"licence not agreed", aitest.Fault{Status: 403, Code: "5016", Message: "User has not agreed to Llama3.2 model terms"},
			func(t *testing.T, pe *ai.ProviderError) {
				if pe.Status != 403 || pe.Code != "5016" || pe.Temporary {
					t.Errorf("got %+v, want a permanent 403 with code 5016", pe)
				}
			}},
		{"429 retry-after seconds", aitest.Fault{Status: 429, RetryAfter: "12"},
			func(t *testing.T, pe *ai.ProviderError) {
				if pe.Status != 429 || pe.Code != "3040" || !pe.Temporary || pe.RetryAfter != 12*time.Second {
					t.Errorf("got %+v, want a temporary 429 (3040) asking for 12s", pe)
				}
			}},
		{"429 retry-after date", aitest.Fault{Status: 429, RetryAfter: aitest.RetryAfterDate(2 * time.Minute)},
			func(t *testing.T, pe *ai.ProviderError) {
				if !pe.Temporary || pe.RetryAfter <= time.Minute || pe.RetryAfter > 2*time.Minute {
					t.Errorf("got %+v, want a temporary 429 asking for about 2m", pe)
				}
			}},
		{"408 timeout", aitest.Fault{Status: 408},
			func(t *testing.T, pe *ai.ProviderError) {
				if pe.Code != "3007" || !pe.Temporary {
					t.Errorf("got %+v, want a temporary 3007", pe)
				}
			}},
		{"500", aitest.Fault{Status: 500},
			func(t *testing.T, pe *ai.ProviderError) {
				if pe.Status != 500 || !pe.Temporary {
					t.Errorf("got %+v, want a temporary 500", pe)
				}
			}},
		{"503", aitest.Fault{Status: 503},
			func(t *testing.T, pe *ai.ProviderError) {
				if pe.Status != 503 || !pe.Temporary {
					t.Errorf("got %+v, want a temporary 503", pe)
				}
			}},
		{"success false, capacity", aitest.Fault{Body: `{"result":null,"success":false,"errors":[{"code":3040,"message":"No more data centers to forward the request to"}],"messages":[]}`},
			func(t *testing.T, pe *ai.ProviderError) {
				if pe.Code != "3040" || !pe.Temporary {
					t.Errorf("got %+v, want a temporary 3040", pe)
				}
			}},
		{"success false, bad input", aitest.Fault{Body: `{"result":null,"success":false,"errors":[{"code":5006,"message":"Error: required properties at '/' are 'prompt'"},{"code":5006,"message":"second"}],"messages":[]}`},
			func(t *testing.T, pe *ai.ProviderError) {
				if pe.Code != "5006" || pe.Temporary || pe.Message != "Error: required properties at '/' are 'prompt'; second" {
					t.Errorf("got %+v, want a permanent 5006 with both messages", pe)
				}
			}},
		{"no envelope", aitest.Fault{Body: `{"text":"hello"}`},
			func(t *testing.T, pe *ai.ProviderError) {
				if !pe.Temporary || !strings.Contains(pe.Message, "malformed") {
					t.Errorf("got %+v, want a temporary malformed-response error", pe)
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
		{"edge error page", aitest.Fault{Status: 502, Body: "<html>error code: 502</html>"},
			func(t *testing.T, pe *ai.ProviderError) {
				if pe.Status != 502 || !pe.Temporary || !strings.Contains(pe.Message, "error code: 502") {
					t.Errorf("got %+v, want a temporary 502 quoting the page", pe)
				}
			}},
	}
	p, fake := newWorkersAIPair(t, aitest.WorkersAIOptions{}, nil)
	for task, call := range workersAICalls(t) {
		for _, c := range cases {
			t.Run(task+"/"+c.name, func(t *testing.T) {
				before := fake.Calls()
				fake.Fail(1, c.fault)
				c.check(t, requireProviderError(t, call(context.Background(), p), "workers-ai"))
				if fake.Calls() != before+1 {
					t.Errorf("got %d calls, want 1", fake.Calls()-before)
				}
			})
		}
	}
}

func TestWorkersAIUnauthorized(t *testing.T) {
	fake := aitest.NewWorkersAI(t, aitest.WorkersAIOptions{APIKey: "the-right-token-000000000", EchoKey: true})
	p, err := ai.NewWorkersAI(ai.ProviderConfig{BaseURL: fake.BaseURL(), APIKey: remoteTestKey, AccountID: aitest.DefaultAccountID})
	if err != nil {
		t.Fatal(err)
	}
	for task, call := range workersAICalls(t) {
		t.Run(task, func(t *testing.T) {
			pe := requireProviderError(t, call(context.Background(), p), "workers-ai")
			if pe.Status != 401 || pe.Code != "10000" || pe.Temporary || !strings.Contains(pe.Message, "[redacted]") {
				t.Errorf("got %+v, want a permanent 401 (10000) with the echoed token redacted", pe)
			}
		})
	}
}

func TestWorkersAIWrongAccount(t *testing.T) {
	fake := aitest.NewWorkersAI(t, aitest.WorkersAIOptions{APIKey: remoteTestKey})
	p, err := ai.NewWorkersAI(ai.ProviderConfig{BaseURL: fake.BaseURL(), APIKey: remoteTestKey, AccountID: "0000aaaa"})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = p.Summarize(context.Background(), ai.SummarizeRequest{Text: "hello"})
	pe := requireProviderError(t, err, "workers-ai")
	if pe.Code != "7003" || pe.Temporary {
		t.Errorf("got %+v, want a permanent 7003", pe)
	}
}

func TestWorkersAISlowServer(t *testing.T) {
	p, fake := newWorkersAIPair(t, aitest.WorkersAIOptions{}, nil)
	for task, call := range workersAICalls(t) {
		t.Run(task, func(t *testing.T) {
			fake.Fail(1, aitest.Fault{Hang: true})
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			err := call(ctx, p)
			pe := requireProviderError(t, err, "workers-ai")
			if !pe.Temporary || !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("got %v, want a temporary error that is context.DeadlineExceeded", err)
			}
		})
	}
	t.Run("delay", func(t *testing.T) {
		fake.Fail(1, aitest.Fault{Delay: time.Hour})
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, _, err := p.Tag(ctx, ai.TagRequest{Image: remoteTestPNG(t, 3)})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("got %v, want context.DeadlineExceeded", err)
		}
	})
}

func TestWorkersAIConfig(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		pc   ai.ProviderConfig
		want error
	}{
		{ai.ProviderConfig{APIKey: remoteTestKey, AccountID: "abc"}, nil},
		{ai.ProviderConfig{APIKey: remoteTestKey}, ai.ErrUnavailable},
		{ai.ProviderConfig{AccountID: "abc"}, ai.ErrUnavailable},
	}
	for _, c := range cases {
		p, err := ai.NewWorkersAI(c.pc)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Available(ctx); !errors.Is(err, c.want) || (c.want == nil && err != nil) {
			t.Errorf("account %q, key set %v: got %v, want %v", c.pc.AccountID, c.pc.APIKey != "", err, c.want)
		}
	}
	p, _ := ai.NewWorkersAI(ai.ProviderConfig{})
	wantModels := map[ai.Task]string{
		ai.TaskTranscribe: "@cf/openai/whisper-large-v3-turbo", ai.TaskTag: "@cf/microsoft/resnet-50",
		ai.TaskDescribe: "@cf/llava-hf/llava-1.5-7b-hf", ai.TaskSummarize: "@cf/meta/llama-3.1-8b-instruct",
		ai.TaskModerate: "", ai.TaskOCR: "",
	}
	for task, want := range wantModels {
		if got := p.Model(task); got != want {
			t.Errorf("model for %s: got %q, want %q", task, got, want)
		}
	}
	if p.Name() != "workers-ai" {
		t.Errorf("got name %q", p.Name())
	}
	for _, pc := range []ai.ProviderConfig{
		{BaseURL: "api.cloudflare.com/client/v4"},
		{Models: map[ai.Task]string{ai.TaskModerate: "@cf/meta/llama-guard-3-8b"}},
		{Models: map[ai.Task]string{ai.TaskTag: "@cf/../../zones"}},
	} {
		if _, err := ai.NewWorkersAI(pc); err == nil {
			t.Errorf("NewWorkersAI(%+v): got no error", pc)
		}
	}
}

func TestWorkersAIFakeChecksInput(t *testing.T) {
	// The fake refuses what Workers AI refuses, so a provider sending
	// the wrong shape fails: here, a classifier given something that is
	// not an image.
	p, _ := newWorkersAIPair(t, aitest.WorkersAIOptions{}, nil)
	_, _, err := p.Tag(context.Background(), ai.TagRequest{Image: ai.Image{Data: []byte("plain text")}})
	pe := requireProviderError(t, err, "workers-ai")
	if pe.Status != http.StatusBadRequest || pe.Code != "5004" || pe.Temporary {
		t.Errorf("got %+v, want a permanent 400 (5004)", pe)
	}
}
