package main

import (
	"context"
	"flag"
	"fmt"
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
	if token := srv.AdminToken(); token != "" {
		// Straight to the terminal, not the log: the token is a secret
		// and exists nowhere else.
		fmt.Fprintf(stderr, "\n  First start: created an admin API key. It is shown only this once:\n\n    %s\n\n"+
			"  Use it as SLUICE_API_KEY, and make keys with fewer rights with\n"+
			"  `sluice keys create --scope upload,read --name web`.\n\n", token)
	}
	return srv.Run(ctx)
}
