// Package ai is Sluice's inference gateway: the enrichment steps
// (transcript, describe, tags, moderation, ocr, summary) ask it for a
// task, and it sends the call to the providers configured for that task,
// in order, with what production needs around every call: a result cache
// keyed by provider, model, parameters and input hash, per-provider
// concurrency and rate limits, a timeout, retries with jittered backoff
// that honour Retry-After, a circuit breaker per provider, budgets checked
// before the call, and metrics.
//
// Providers implement Provider and one interface per task they can do:
// remote ones speak the OpenAI-compatible API (which also covers
// whisper.cpp, llama.cpp, Ollama, vLLM and LocalAI servers) or Cloudflare
// Workers AI's REST API; local ones run Tesseract for OCR and nsfwjs (in
// a Node sidecar) for image moderation and classification.
package ai

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Task is a kind of inference.
type Task string

const (
	TaskTranscribe Task = "transcribe" // speech to text with timestamps
	TaskDescribe   Task = "describe"   // images to a short description
	TaskTag        Task = "tag"        // an image to labels with confidence
	TaskModerate   Task = "moderate"   // images or text to flagged categories
	TaskOCR        Task = "ocr"        // an image to the text seen in it
	TaskSummarize  Task = "summarize"  // text to a summary
)

// Tasks lists every task.
var Tasks = []Task{TaskTranscribe, TaskDescribe, TaskTag, TaskModerate, TaskOCR, TaskSummarize}

// Provider is one configured inference backend.
type Provider interface {
	// Name is the provider's configured name ("openai", "workers-ai",
	// "tesseract", ...), used in chains, cache keys, logs and metrics.
	Name() string
	// Model is the model the provider uses for a task ("" if none applies).
	Model(t Task) string
	// Available reports whether the provider can take calls now: nil, or
	// why not (a local tool not installed, a sidecar not running).
	Available(ctx context.Context) error
}

// Task interfaces: a provider implements those it can do.
type (
	Transcriber interface {
		Provider
		Transcribe(ctx context.Context, req TranscribeRequest) (Transcript, Usage, error)
	}
	Describer interface {
		Provider
		Describe(ctx context.Context, req DescribeRequest) (Description, Usage, error)
	}
	Tagger interface {
		Provider
		Tag(ctx context.Context, req TagRequest) ([]Label, Usage, error)
	}
	Moderator interface {
		Provider
		Moderate(ctx context.Context, req ModerateRequest) (Moderation, Usage, error)
	}
	Reader interface {
		Provider
		OCR(ctx context.Context, req OCRRequest) (OCRResult, Usage, error)
	}
	Summarizer interface {
		Provider
		Summarize(ctx context.Context, req SummarizeRequest) (Summary, Usage, error)
	}
)

// TranscribeRequest is one piece of audio to transcribe: a WAV, FLAC, MP3
// or M4A file's bytes (steps send 16 kHz mono, cut at silences to stay
// under provider upload limits).
type TranscribeRequest struct {
	Audio    []byte
	Filename string // e.g. "chunk-003.flac"; providers use its extension
	// Language is an ISO 639-1 code, or "" to detect.
	Language string
	// Prompt carries text that precedes this piece (the end of the last
	// chunk's transcript), to keep spelling consistent across chunks.
	Prompt string
	// Duration of the audio in seconds, for budgets and timeouts.
	Duration float64
}

// Transcript is the text of some speech.
type Transcript struct {
	Language string    `json:"language,omitempty"`
	Text     string    `json:"text"`
	Segments []Segment `json:"segments"`
}

// Segment is a timed piece of a transcript, in seconds from the start of
// the audio sent.
type Segment struct {
	Start float64 `json:"start"`
	End   float64 `json:"end"`
	Text  string  `json:"text"`
}

// Image is an encoded picture (JPEG or PNG).
type Image struct {
	Data        []byte
	ContentType string // image/jpeg or image/png
}

// DescribeRequest asks for a short description of some frames.
type DescribeRequest struct {
	Images    []Image
	Prompt    string
	MaxTokens int
}

// Description is a model's description of what it was shown.
type Description struct {
	Text string `json:"text"`
}

// TagRequest asks for labels of one image.
type TagRequest struct {
	Image Image
	// TopK bounds how many labels come back (0: the provider's default).
	TopK int
}

// Label is a class with the model's confidence in [0, 1].
type Label struct {
	Name  string  `json:"name"`
	Score float64 `json:"score"`
}

// ModerateRequest asks whether images or text break content policy.
type ModerateRequest struct {
	Images []Image
	Text   string
}

// Moderation is a verdict: scores per category in [0, 1], and whether
// the provider flags the content.
type Moderation struct {
	Flagged    bool               `json:"flagged"`
	Categories map[string]float64 `json:"categories"`
}

// OCRRequest asks for the text in one image.
type OCRRequest struct {
	Image Image
	// Languages are Tesseract-style codes ("eng", "deu"); empty: English.
	Languages []string
}

// OCRResult is the text found in an image, line by line.
type OCRResult struct {
	Text  string    `json:"text"`
	Lines []OCRLine `json:"lines,omitempty"`
}

// OCRLine is one line of text with the recognizer's confidence in [0, 1].
type OCRLine struct {
	Text       string  `json:"text"`
	Confidence float64 `json:"confidence"`
}

// SummarizeRequest asks for a summary of a text.
type SummarizeRequest struct {
	Text      string
	Prompt    string
	MaxTokens int
}

// Summary is a model's summary.
type Summary struct {
	Text string `json:"text"`
}

// Usage is what a call consumed, for budgets and billing metrics.
type Usage struct {
	AudioSeconds float64
	Images       int
	InputTokens  int
	OutputTokens int
}

// Add sums usages.
func (u Usage) Add(v Usage) Usage {
	return Usage{
		AudioSeconds: u.AudioSeconds + v.AudioSeconds,
		Images:       u.Images + v.Images,
		InputTokens:  u.InputTokens + v.InputTokens,
		OutputTokens: u.OutputTokens + v.OutputTokens,
	}
}

// ProviderError is a failed call, as the provider reported it. Providers
// return it (wrapped or not) for HTTP errors and error envelopes, so that
// the gateway can decide whether to retry.
type ProviderError struct {
	Provider string
	// Status is the HTTP status, or 0 for errors without one.
	Status int
	// Code and Message come from the provider's error envelope.
	Code    string
	Message string
	// RetryAfter is how long the provider asked callers to wait (from a
	// Retry-After header), or 0.
	RetryAfter time.Duration
	// Temporary marks failures worth retrying: 429, 5xx, timeouts,
	// connection errors, truncated or malformed responses.
	Temporary bool
}

func (e *ProviderError) Error() string {
	msg := e.Message
	if e.Code != "" {
		msg = e.Code + ": " + msg
	}
	if e.Status != 0 {
		return fmt.Sprintf("%s: HTTP %d: %s", e.Provider, e.Status, msg)
	}
	return fmt.Sprintf("%s: %s", e.Provider, msg)
}

// Errors the gateway returns.
var (
	// ErrNotConfigured: no provider is configured for the task. Steps end
	// skipped with this as the reason.
	ErrNotConfigured = errors.New("ai: no provider configured for this task")
	// ErrUnavailable: a provider cannot take calls (see Available).
	ErrUnavailable = errors.New("ai: provider unavailable")
	// ErrBudget: the call would exceed a budget; it was not made.
	ErrBudget = errors.New("ai: budget exceeded")
	// ErrOpen: the provider's circuit breaker is open after repeated
	// failures; calls skip it until it is probed again.
	ErrOpen = errors.New("ai: circuit breaker open")
)

// ProviderConfig describes one provider, as the AI configuration file
// gives it. Secrets are never in the file: APIKey is filled from the
// environment variable or file the configuration names.
type ProviderConfig struct {
	// Name identifies the provider in chains ("openai", "local-whisper").
	Name string
	// Type selects the implementation: "openai" (any OpenAI-compatible
	// server), "workers-ai", "tesseract" or "nsfwjs".
	Type string
	// BaseURL of an HTTP provider (OpenAI-compatible: up to and including
	// /v1; Workers AI: https://api.cloudflare.com/client/v4 by default).
	BaseURL string
	// APIKey is the bearer token, resolved from APIKeyEnv or APIKeyFile.
	APIKey string `json:"-"`
	// AccountID is the Cloudflare account (Workers AI).
	AccountID string
	// Models maps each task the provider serves to its model name.
	Models map[Task]string
	// Command is the executable of a local provider ("tesseract", "node").
	Command string
	// Languages for OCR ("eng"), when the request names none.
	Languages []string
}
