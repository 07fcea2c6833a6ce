package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/sluice-media/sluice/internal/config"
	"github.com/sluice-media/sluice/internal/queue"
	"github.com/sluice-media/sluice/internal/server"
)

// serve runs a Sluice process in a role: `sluice serve` (everything),
// `sluice gateway` (HTTP only) or `sluice worker --pool fast|heavy|all`
// (jobs only).
func serve(ctx context.Context, role string, args []string, stderr io.Writer) error {
	cfg := config.Default()
	cfg.Role = role
	if err := cfg.FromEnv(nil); err != nil {
		return err
	}
	name := "serve"
	if role != config.RoleAll {
		name = role
	}
	fs := flag.NewFlagSet("sluice "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.Flags(fs)
	pool := "all"
	if role == config.RoleWorker {
		fs.StringVar(&pool, "pool", pool, "the pool whose jobs this worker runs: fast (probes, thumbnails, AI), heavy (encodes) or all")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch pool {
	case "all":
	case queue.PoolFast, queue.PoolHeavy:
		cfg.Worker.Pools = []string{pool}
	default:
		return fmt.Errorf("--pool %q: want fast, heavy or all", pool)
	}
	log := newLogger(stderr)
	srv, err := server.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	if token := srv.AdminToken(); token != "" {
		// Straight to the terminal, not the log: the token is a secret
		// and exists nowhere else.
		fmt.Fprintf(stderr, "\n  First start: created an admin API key. It is shown only this once:\n\n    %s\n\n"+
			"  Use it as SLUICE_API_KEY, or to sign in to the dashboard at %s/ui/,\n"+
			"  and make keys with fewer rights with\n"+
			"  `sluice keys create --scope upload,read --name web`.\n\n", token, srv.URL())
	}
	return srv.Run(ctx)
}
