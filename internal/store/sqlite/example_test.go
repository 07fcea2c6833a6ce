package sqlite_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/sluice-media/sluice/internal/store"
	"github.com/sluice-media/sluice/internal/store/sqlite"
)

func ExampleOpen() {
	dir, err := os.MkdirTemp("", "sluice")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(dir, "sluice.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	if err := s.CreateAsset(ctx, store.Asset{ID: "a1", Name: "clip.mp4"}); err != nil {
		log.Fatal(err)
	}
	a, err := s.GetAsset(ctx, "a1")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(a.Name, a.Status)
	// Output: clip.mp4 pending
}
