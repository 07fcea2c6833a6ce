package main

import (
	"context"
	"flag"
	"io"

	"github.com/sluice-media/sluice/internal/config"
	"github.com/sluice-media/sluice/internal/server"
)

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	cfg := config.Default()
	if err := cfg.FromEnv(nil); err != nil {
		return err
	}
	fs := flag.NewFlagSet("sluice serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.Flags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := newLogger(stderr)
	srv, err := server.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	return srv.Run(ctx)
}
