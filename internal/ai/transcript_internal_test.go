package ai

import (
	"fmt"
	"strings"
	"testing"

	"github.com/sluice-media/sluice/internal/media"
)

func TestCutAtSilences(t *testing.T) {
	// 25 minutes, 10-minute pieces: a silence near the first limit takes
	// the cut; none near the second, so that cut overlaps.
	silences := []media.Span{{Start: 100, End: 101}, {Start: 530, End: 531}, {Start: 560, End: 563}}
	got := cutAtSilences(1500, 600, 2, silences)
	want := []piece{{0, 561.5, 0}, {561.5, 1159.5, 2}, {1159.5, 1500, 0}}
	if len(got) != len(want) {
		t.Fatalf("pieces = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("piece %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if got := cutAtSilences(300, 600, 2, nil); len(got) != 1 || got[0] != (piece{0, 300, 0}) {
		t.Errorf("short audio: %+v", got)
	}
}

func TestStitch(t *testing.T) {
	p1 := piece{Start: 0, End: 10, Overlap: 2}
	so := stitch(nil, []Segment{{0, 4, " one "}, {4, 9.5, "two"}, {10.2, 11.5, "three (heard again next)"}}, p1)
	p2 := piece{Start: 10, End: 20}
	so = stitch(so, []Segment{{0.2, 1.5, "three"}, {1.5, 3, "four"}, {3, 4, "  "}}, p2)
	var texts []string
	for _, s := range so {
		texts = append(texts, s.Text)
	}
	if got := strings.Join(texts, "|"); got != "one|two|three|four" {
		t.Errorf("stitched = %s, want one|two|three|four", got)
	}
	if so[2].Start != 10.2 || so[3].End != 13 {
		t.Errorf("times not moved onto the asset's timeline: %+v", so)
	}
}

func TestSubtitles(t *testing.T) {
	segs := []Segment{{0, 1.5, "Hello"}, {3661.25, 3662, "a --> b\n\nc"}}
	vtt := webVTT(segs)
	if vtt != "WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nHello\n\n01:01:01.250 --> 01:01:02.000\na -> b c\n" {
		t.Errorf("vtt = %q", vtt)
	}
	if got := srt(segs); !strings.HasPrefix(got, "1\n00:00:00,000 --> 00:00:01,500\nHello\n\n2\n01:01:01,250") {
		t.Errorf("srt = %q", got)
	}
	if got := lastWords([]Segment{{0, 1, "alpha beta"}, {1, 2, "gamma delta"}}, 14); got != "beta gamma delta" && got != "gamma delta" {
		t.Errorf("lastWords = %q", got)
	}
}

func TestPickInScenes(t *testing.T) {
	for _, tc := range []struct {
		dur  float64
		cuts []float64
		n    int
		want []float64
	}{
		// Three scenes of 2, 6 and 2 s; two frames: the 6 s one and the first 2 s one.
		{10, []float64{2, 8}, 2, []float64{1, 5}},
		// One cut, three frames: the longer scene is split.
		{10, []float64{4}, 3, []float64{2, 5.5, 8.5}},
		// Four scenes, two frames: the two longest.
		{10, []float64{1, 5, 6}, 2, []float64{3, 8}},
		// No cuts: even halves.
		{8, nil, 2, []float64{2, 6}},
		{8, nil, 1, []float64{4}},
	} {
		got := pickInScenes(tc.dur, tc.cuts, tc.n)
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("pickInScenes(%v, %v, %d) = %v, want %v", tc.dur, tc.cuts, tc.n, got, tc.want)
		}
	}
}
