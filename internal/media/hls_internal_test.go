package media

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/sluice-media/sluice/internal/mediatest"
	"github.com/sluice-media/sluice/internal/pipeline"
)

// TestEnsureCodecs drops the CODECS attributes FFmpeg wrote into a master
// playlist and checks that ensureCodecs puts back the same values, read
// from the media files, for both segment types.
func TestEnsureCodecs(t *testing.T) {
	n, err := NewNative(DefaultNativeConfig())
	if err != nil {
		t.Fatal(err)
	}
	e := &Engines{Native: n, Default: ModeNative}
	in := mediatest.Generate(t, t.TempDir(), "in", mediatest.Clip{Width: 320, Height: 240, Duration: 1, Video: true, Audio: true})
	ctx := context.Background()
	m, err := n.Probe(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	codecsAttr := regexp.MustCompile(`,CODECS="[^"]*"`)
	for _, segType := range []string{SegmentFMP4, SegmentMPEGTS} {
		t.Run(segType, func(t *testing.T) {
			job := &pipeline.Job{Input: in, Dir: t.TempDir(), Media: m}
			h := &HLS{Engines: e, Heights: []int{240, 120}, SegmentType: segType, Preset: "ultrafast"}
			if _, err := h.Run(ctx, job); err != nil {
				t.Fatal(err)
			}
			master := filepath.Join(job.Dir, HLSMaster)
			want, err := os.ReadFile(master)
			if err != nil {
				t.Fatal(err)
			}
			if got := len(codecsAttr.FindAll(want, -1)); got != 2 {
				t.Fatalf("FFmpeg wrote CODECS for %d of 2 variants:\n%s", got, want)
			}
			if err := os.WriteFile(master, codecsAttr.ReplaceAll(want, nil), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := ensureCodecs(filepath.Join(job.Dir, HLSDir), true); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(master)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Errorf("restored master playlist\n%s\nwant FFmpeg's\n%s", got, want)
			}
		})
	}
}

func TestLadder(t *testing.T) {
	tests := []struct {
		name  string
		h     HLS
		short int
		fps   float64
		want  []rung
	}{
		{"1080p source, default ladder", HLS{}, 1080, 25,
			[]rung{{"1080p", 1080, 5140}, {"720p", 720, 2800}, {"480p", 480, 1520}, {"360p", 360, 990}}},
		{"between rungs: only smaller ones", HLS{Heights: []int{720, 480}}, 600, 25,
			[]rung{{"480p", 480, 1520}}},
		{"smaller than all: the source size, even", HLS{}, 241, 25,
			[]rung{{"240p", 240, 540}}},
		{"order, duplicates and odd sizes", HLS{Heights: []int{361, 720, 360}}, 720, 60,
			[]rung{{"720p", 720, 4200}, {"360p", 360, 1480}}},
		{"given caps follow their heights", HLS{Heights: []int{360, 720}, MaxBitrates: []int{700, 2000}}, 1080, 25,
			[]rung{{"720p", 720, 2000}, {"360p", 360, 700}}},
	}
	for _, tt := range tests {
		got := tt.h.ladder(tt.short, tt.fps)
		if len(got) != len(tt.want) {
			t.Errorf("%s: ladder = %+v, want %+v", tt.name, got, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("%s: ladder = %+v, want %+v", tt.name, got, tt.want)
				break
			}
		}
	}
}
