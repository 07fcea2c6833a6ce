package ai_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/sluice-media/sluice/internal/ai"
	"github.com/sluice-media/sluice/internal/ai/aitest"
	"github.com/sluice-media/sluice/internal/media"
	"github.com/sluice-media/sluice/internal/mediatest"
	"github.com/sluice-media/sluice/internal/pipeline"
)

// TestTranscriptPieces: audio longer than a piece is cut (in silences),
// each piece sent once, and the segments stitched onto the asset's
// timeline in order.
func TestTranscriptPieces(t *testing.T) {
	mediatest.RequireFFmpeg(t)
	dir := t.TempDir()
	in := filepath.Join(dir, "talk.m4a")
	// 75 s of tone with a second of silence every 20 s.
	mediatest.Run(t, "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
		"-f", "lavfi", "-i", "sine=frequency=300:sample_rate=16000:duration=75",
		"-af", "volume=enable='lt(mod(t,20),1)':volume=0", "-c:a", "aac", in)
	native, err := media.NewNative(media.DefaultNativeConfig())
	if err != nil {
		t.Fatal(err)
	}
	e := &media.Engines{Native: native, Default: media.ModeNative}
	m, err := native.Probe(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	fake := aitest.NewOpenAI(t, aitest.OpenAIOptions{})
	p, err := ai.NewOpenAI(ai.ProviderConfig{Name: "oa", BaseURL: fake.BaseURL(), APIKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	g, err := ai.New(ai.Config{Chains: map[ai.Task][]string{ai.TaskTranscribe: {"oa"}}}, []ai.Provider{p}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := pipeline.NewRegistry(ai.Types(g, e)...)
	if err != nil {
		t.Fatal(err)
	}
	typ, _ := reg.Lookup("transcript")
	step, err := typ.Build(map[string]any{"chunk": "30s"})
	if err != nil {
		t.Fatal(err)
	}
	job := &pipeline.Job{AssetID: "a", Input: in, Dir: t.TempDir(), Media: m}
	res, err := step.Run(context.Background(), job)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Outputs) != 3 {
		t.Fatalf("outputs = %+v, want json, vtt and srt", res.Outputs)
	}
	data, err := os.ReadFile(filepath.Join(job.Dir, ai.TranscriptJSON))
	if err != nil {
		t.Fatal(err)
	}
	var tr struct {
		Pieces   int
		Segments []ai.Segment
	}
	if err := json.Unmarshal(data, &tr); err != nil {
		t.Fatal(err)
	}
	if tr.Pieces < 3 || fake.Calls() != tr.Pieces {
		t.Errorf("pieces = %d, provider calls = %d; want at least 3, one call each", tr.Pieces, fake.Calls())
	}
	for i := 1; i < len(tr.Segments); i++ {
		if tr.Segments[i].Start < tr.Segments[i-1].Start {
			t.Errorf("segments out of order at %d: %+v", i, tr.Segments)
		}
	}
	if last := tr.Segments[len(tr.Segments)-1]; last.Start < 40 {
		t.Errorf("last segment starts at %.1f s: the pieces were not moved onto the timeline", last.Start)
	}
}
