package postgres_test

import (
	"context"
	"log"

	"github.com/sluice-media/sluice/internal/store/postgres"
)

// Open takes a libpq-style DSN, URL or key=value, plus pgxpool's own
// settings. The tests run this against a real server (TestConformance);
// the example only shows the call, as it needs a server to run.
func ExampleOpen() {
	ctx := context.Background()
	s, err := postgres.Open(ctx, "postgres://sluice@db.internal:5432/sluice?sslmode=verify-full&pool_max_conns=20")
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	// s is a store.Store: hand it to the gateway and the workers.
}
