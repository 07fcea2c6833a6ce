package aitest_test

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"

	"github.com/sluice-media/sluice/internal/ai/aitest"
)

// post sends body and returns the status and the decoded JSON answer.
func post(t *testing.T, url, key, contentType string, body []byte) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var v map[string]any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("answer is not a JSON object: %q", data)
	}
	return resp.StatusCode, v
}

func errorMessage(v map[string]any) string {
	if e, ok := v["error"].(map[string]any); ok {
		m, _ := e["message"].(string)
		return m
	}
	errs, _ := v["errors"].([]any)
	if len(errs) > 0 {
		m, _ := errs[0].(map[string]any)["message"].(string)
		return m
	}
	return ""
}

func TestFakeOpenAIRefusesWrongRequests(t *testing.T) {
	const key = "sk-fake"
	s := aitest.NewOpenAI(t, aitest.OpenAIOptions{APIKey: key})
	chat := s.BaseURL() + "/chat/completions"
	png := "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
	cases := []struct {
		name, url, key, contentType, body string
		status                            int
		message                           string
	}{
		{"no key", chat, "", "application/json", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`, 401, "didn't provide an API key"},
		{"no model", chat, key, "application/json", `{"messages":[{"role":"user","content":"hi"}]}`, 400, "model"},
		{"json mode without the word", chat, key, "application/json",
			`{"model":"m","response_format":{"type":"json_object"},"messages":[{"role":"user","content":"list labels"}]}`, 400, "must contain the word 'json'"},
		{"image URL not data", chat, key, "application/json",
			`{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"file:///etc/passwd"}}]}]}`, 400, "Invalid image URL"},
		{"image type lies", chat, key, "application/json",
			`{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"` + strings.Replace(png, "image/png", "image/jpeg", 1) + `"}}]}]}`, 400, "unsupported image"},
		{"two images to moderate", s.BaseURL() + "/moderations", key, "application/json",
			`{"model":"omni-moderation-latest","input":[{"type":"image_url","image_url":{"url":"` + png + `"}},{"type":"image_url","image_url":{"url":"` + png + `"}}]}`, 400, "one image"},
		{"transcription not multipart", s.BaseURL() + "/audio/transcriptions", key, "application/json", `{"model":"whisper-1"}`, 400, "multipart"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, v := post(t, c.url, c.key, c.contentType, []byte(c.body))
			if status != c.status || !strings.Contains(errorMessage(v), c.message) {
				t.Errorf("got %d %v, want %d with %q", status, v, c.status, c.message)
			}
		})
	}

	t.Run("granularities need verbose_json", func(t *testing.T) {
		var b bytes.Buffer
		mw := multipart.NewWriter(&b)
		fw, _ := mw.CreateFormFile("file", "a.wav")
		fw.Write([]byte("RIFF...."))
		mw.WriteField("model", "whisper-1")
		mw.WriteField("timestamp_granularities[]", "segment")
		mw.Close()
		status, v := post(t, s.BaseURL()+"/audio/transcriptions", key, mw.FormDataContentType(), b.Bytes())
		if status != 400 || !strings.Contains(errorMessage(v), "verbose_json") {
			t.Errorf("got %d %v", status, v)
		}
	})
	if s.Calls() != len(cases)+1 || s.CallsTo("chat") != 5 {
		t.Errorf("counted %d calls, %d to chat", s.Calls(), s.CallsTo("chat"))
	}
}

func TestFakeWorkersAIRefusesWrongRequests(t *testing.T) {
	const key = "cf-token"
	s := aitest.NewWorkersAI(t, aitest.WorkersAIOptions{APIKey: key})
	run := s.BaseURL() + "/accounts/" + aitest.DefaultAccountID + "/ai/run/"
	cases := []struct {
		name, url, key, contentType, body string
		status                            int
		code                              float64
	}{
		{"bad token", run + "@cf/meta/llama-3.1-8b-instruct", "nope", "application/json", `{"prompt":"hi"}`, 401, 10000},
		{"unknown model", run + "@cf/nobody/nothing", key, "application/json", `{"prompt":"hi"}`, 400, 5007},
		{"turbo wants base64", run + "@cf/openai/whisper-large-v3-turbo", key, "application/json", `{"audio":[1,2,3]}`, 400, 5006},
		{"llava wants bytes", run + "@cf/llava-hf/llava-1.5-7b-hf", key, "application/json", `{"image":[1,2,300],"prompt":"x"}`, 400, 5006},
		{"classifier wants an image", run + "@cf/microsoft/resnet-50", key, "application/octet-stream", "hello", 400, 5004},
		{"wrong account", s.BaseURL() + "/accounts/other/ai/run/@cf/microsoft/resnet-50", key, "application/octet-stream", "x", 400, 7003},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, v := post(t, c.url, c.key, c.contentType, []byte(c.body))
			errs, _ := v["errors"].([]any)
			if status != c.status || v["success"] != false || len(errs) == 0 || errs[0].(map[string]any)["code"] != c.code {
				t.Errorf("got %d %v, want %d with code %v", status, v, c.status, c.code)
			}
		})
	}
}

func TestFakeTruncates(t *testing.T) {
	s := aitest.NewWorkersAI(t, aitest.WorkersAIOptions{})
	s.Fail(1, aitest.Fault{Truncated: true})
	resp, err := http.Post(s.BaseURL()+"/accounts/"+aitest.DefaultAccountID+"/ai/run/@cf/meta/llama-3.1-8b-instruct",
		"application/json", strings.NewReader(`{"prompt":"hi"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != io.ErrUnexpectedEOF || int64(len(data)) >= resp.ContentLength {
		t.Errorf("read %d of %d bytes, error %v; want a body cut short", len(data), resp.ContentLength, err)
	}
	if !s.LastRequest().Faulted {
		t.Error("call not marked as faulted")
	}
}
