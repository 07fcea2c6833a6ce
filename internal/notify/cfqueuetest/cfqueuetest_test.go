package cfqueuetest_test

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/notify/cfqueuetest"
)

type answer struct {
	Success bool `json:"success"`
	Errors  []struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"errors"`
	Result struct {
		Messages []struct {
			ID          string            `json:"id"`
			Body        string            `json:"body"`
			Attempts    int               `json:"attempts"`
			LeaseID     string            `json:"lease_id"`
			Metadata    map[string]string `json:"metadata"`
			TimestampMs int64             `json:"timestamp_ms"`
		} `json:"messages"`
		AckCount   int      `json:"ackCount"`
		RetryCount int      `json:"retryCount"`
		Warnings   []string `json:"warnings"`
	} `json:"result"`
}

// post calls the fake as the documentation's curl and fetch examples do.
func post(t *testing.T, q *cfqueuetest.Queue, op, token, body string) (int, answer, http.Header) {
	t.Helper()
	o := q.Options()
	req, err := http.NewRequest(http.MethodPost, q.BaseURL()+"/accounts/"+o.AccountID+"/queues/"+o.QueueID+"/messages/"+op, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var a answer
	_ = json.Unmarshal(raw, &a)
	return resp.StatusCode, a, resp.Header
}

func TestAuthAndValidation(t *testing.T) {
	q := cfqueuetest.New(t, cfqueuetest.Options{})
	tok := q.Options().Token
	if status, a, _ := post(t, q, "pull", "wrong", `{}`); status != 401 || a.Success || len(a.Errors) != 1 || a.Errors[0].Code != 10000 {
		t.Errorf("wrong token: got %d %+v, want 401 with code 10000", status, a)
	}
	for _, body := range []string{`{"batch_size": 101}`, `{"batch_size": 0}`, `{"batch_size": 1.5}`,
		`{"visibility_timeout_ms": 43200001}`, `{"visibility_timeout": "1s"}`, `[]`, `nope`} {
		if status, a, _ := post(t, q, "pull", tok, body); status != 400 || a.Success {
			t.Errorf("pull %s: got %d %+v, want 400", body, status, a)
		}
	}
	for _, body := range []string{`{}`, `{"acks":[{}]}`, `{"retries":[{"lease_id":"x","delay_seconds":-1}]}`} {
		if status, _, _ := post(t, q, "ack", tok, body); status != 400 {
			t.Errorf("ack %s: got %d, want 400", body, status)
		}
	}
	if status, a, _ := post(t, q, "pull", tok, `{}`); status != 200 || !a.Success || a.Result.Messages == nil || len(a.Result.Messages) != 0 {
		t.Errorf("empty queue: got %d %+v, want an empty list at once", status, a)
	}
}

func TestEncodingAndBatches(t *testing.T) {
	q := cfqueuetest.New(t, cfqueuetest.Options{})
	tok := q.Options().Token
	for i := 0; i < 6; i++ {
		q.SendJSON(map[string]int{"n": i})
	}
	q.Send("text", []byte("plain"))
	_, a, _ := post(t, q, "pull", tok, `{}`)
	if len(a.Result.Messages) != 5 {
		t.Fatalf("default batch: got %d messages, want 5", len(a.Result.Messages))
	}
	m := a.Result.Messages[0]
	body, err := base64.StdEncoding.DecodeString(m.Body)
	if err != nil || string(body) != `{"n":0}` || m.Metadata["CF-Content-Type"] != "json" || m.Attempts != 1 || m.LeaseID == "" ||
		m.TimestampMs != q.Options().Start.UnixMilli() {
		t.Errorf("json message: got %+v (body %q, %v)", m, body, err)
	}
	_, a, _ = post(t, q, "pull", tok, `{"batch_size": 10}`)
	if len(a.Result.Messages) != 2 || a.Result.Messages[1].Body != "plain" || a.Result.Messages[1].Metadata["CF-Content-Type"] != "text" {
		t.Errorf("rest: got %+v, want json 5 and the plain text message", a.Result.Messages)
	}
}

func TestLeasesRetriesAndAcks(t *testing.T) {
	q := cfqueuetest.New(t, cfqueuetest.Options{MaxRetries: 3})
	tok := q.Options().Token
	id := q.Send("bytes", []byte{1, 2, 3})

	// Not acknowledged: back after the visibility timeout (the guide's
	// "visibility_timeout" name), attempts counting deliveries.
	_, a, _ := post(t, q, "pull", tok, `{"visibility_timeout": 10000}`)
	first := a.Result.Messages[0].LeaseID
	q.Advance(9 * time.Second)
	if _, a, _ = post(t, q, "pull", tok, `{}`); len(a.Result.Messages) != 0 {
		t.Fatalf("redelivered during the lease: %+v", a.Result.Messages)
	}
	q.Advance(time.Second)
	_, a, _ = post(t, q, "pull", tok, `{"visibility_timeout_ms": 60000}`)
	if len(a.Result.Messages) != 1 || a.Result.Messages[0].Attempts != 2 || a.Result.Messages[0].LeaseID == first {
		t.Fatalf("after the lease: got %+v, want the message again at attempt 2 with a new lease", a.Result.Messages)
	}

	// Retried with a delay: back once the delay has passed.
	_, a, _ = post(t, q, "ack", tok, `{"acks":[],"retries":[{"lease_id":"`+a.Result.Messages[0].LeaseID+`","delay_seconds":20}]}`)
	if a.Result.RetryCount != 1 {
		t.Fatalf("retry: got %+v", a.Result)
	}
	q.Advance(19 * time.Second)
	if _, a, _ = post(t, q, "pull", tok, `{}`); len(a.Result.Messages) != 0 {
		t.Fatalf("redelivered before the delay: %+v", a.Result.Messages)
	}
	q.Advance(time.Second)
	_, a, _ = post(t, q, "pull", tok, `{}`)
	if len(a.Result.Messages) != 1 || a.Result.Messages[0].Attempts != 3 {
		t.Fatalf("after the delay: got %+v, want attempt 3", a.Result.Messages)
	}

	// A late ack, by the first lease, is accepted.
	_, a, _ = post(t, q, "ack", tok, `{"acks":[{"lease_id":"`+first+`"}]}`)
	if a.Result.AckCount != 1 || q.Message(id).State != cfqueuetest.Acked {
		t.Errorf("late ack: got %+v, state %s", a.Result, q.Message(id).State)
	}
	_, a, _ = post(t, q, "ack", tok, `{"acks":[{"lease_id":"unknown"}]}`)
	if a.Result.AckCount != 0 || len(a.Result.Warnings) != 1 {
		t.Errorf("unknown lease: got %+v, want a warning", a.Result)
	}
}

func TestOutOfRetries(t *testing.T) {
	q := cfqueuetest.New(t, cfqueuetest.Options{MaxRetries: 2})
	tok := q.Options().Token
	id := q.SendJSON("x")
	for attempt := 1; attempt <= 2; attempt++ {
		_, a, _ := post(t, q, "pull", tok, `{"visibility_timeout_ms": 1000}`)
		if len(a.Result.Messages) != 1 || a.Result.Messages[0].Attempts != attempt {
			t.Fatalf("attempt %d: got %+v", attempt, a.Result.Messages)
		}
		q.Advance(time.Second)
	}
	if _, a, _ := post(t, q, "pull", tok, `{}`); len(a.Result.Messages) != 0 || q.Message(id).State != cfqueuetest.Dead {
		t.Errorf("after max_retries attempts: got %+v, state %s; want it gone", a.Result.Messages, q.Message(id).State)
	}
}

func TestFaults(t *testing.T) {
	q := cfqueuetest.New(t, cfqueuetest.Options{})
	tok := q.Options().Token
	q.Inject(cfqueuetest.Fault{Op: "ack", Status: 503}, cfqueuetest.RateLimited("3"), cfqueuetest.Malformed())
	if status, _, h := post(t, q, "pull", tok, `{}`); status != 429 || h.Get("Retry-After") != "3" {
		t.Errorf("got %d Retry-After %q, want 429 with 3", status, h.Get("Retry-After"))
	}
	if status, a, _ := post(t, q, "pull", tok, `{}`); status != 200 || a.Success {
		t.Errorf("malformed: got %d %+v, want 200 with a body that does not decode", status, a)
	}
	if status, _, _ := post(t, q, "ack", tok, `{"acks":[]}`); status != 503 {
		t.Errorf("ack fault: got %d, want 503", status)
	}
	if status, a, _ := post(t, q, "pull", tok, `{}`); status != 200 || !a.Success {
		t.Errorf("after the faults: got %d %+v", status, a)
	}
}
