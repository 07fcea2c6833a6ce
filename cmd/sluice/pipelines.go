package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/sluice-media/sluice/internal/config"
	"github.com/sluice-media/sluice/internal/gateway"
	"github.com/sluice-media/sluice/internal/media"
	"github.com/sluice-media/sluice/internal/pipeline"
	"github.com/sluice-media/sluice/internal/server"
	"github.com/sluice-media/sluice/internal/wire"
)

const pipelinesUsage = `usage:
  sluice pipelines validate FILE...   check pipeline files; errors name file, line and field
  sluice pipelines list [--server URL | --pipelines FILE,...] [--json]
                                      the pipelines in match order: a running server's,
                                      or the built-in ones plus FILEs (env SLUICE_PIPELINES)
  sluice pipelines steps [--json]     the step types and their parameters
`

func pipelinesCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, pipelinesUsage)
		return exitError{2}
	}
	fs := flag.NewFlagSet("sluice pipelines "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	srv := fs.String("server", "", "list a running server's pipelines")
	cfg := config.Default()
	if err := cfg.FromEnv(nil); err != nil {
		return err
	}
	files := fs.String("pipelines", "", "pipeline files to load after the built-in ones, comma-separated (env SLUICE_PIPELINES)")
	fs.StringVar(&cfg.AIConfig, "ai-config", cfg.AIConfig, "AI providers file (env SLUICE_AI_CONFIG)")
	fs.StringVar(&cfg.AssetsDir, "assets-dir", cfg.AssetsDir, "directory of files pipelines may name (env SLUICE_ASSETS_DIR)")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	// Steps are checked against the engines this machine has: a text
	// watermark, say, needs native FFmpeg.
	engines := &media.Engines{}
	if n, err := media.NewNative(cfg.Native); err == nil {
		engines.Native = n
	}
	gw, err := server.OpenAI(cfg.AIConfig, filepath.Join(os.TempDir(), "sluice-ai-cache"), nil, nil, newLogger(io.Discard))
	if err != nil {
		return err
	}
	defer gw.Close()
	reg, err := server.Registry(engines, cfg.AssetsDir, gw)
	if err != nil {
		return err
	}
	switch args[0] {
	case "validate":
		if len(pos) == 0 {
			fmt.Fprint(stderr, pipelinesUsage)
			return exitError{2}
		}
		failed := false
		for _, f := range pos {
			if _, err := pipeline.DefaultSet(reg, f); err != nil {
				failed = true
				for _, e := range splitJoined(err) {
					fmt.Fprintln(stderr, e)
				}
				continue
			}
			fmt.Fprintf(stdout, "%s: ok\n", f)
		}
		if failed {
			return exitError{1}
		}
		return nil
	case "list":
		var list wire.PipelineList
		if *srv != "" {
			c, err := newClient(*srv)
			if err != nil {
				return err
			}
			if list, err = c.Pipelines(ctx); err != nil {
				return err
			}
		} else {
			if *files != "" {
				cfg.Pipelines = strings.Split(*files, ",")
			}
			set, err := pipeline.DefaultSet(reg, cfg.Pipelines...)
			if err != nil {
				return err
			}
			list = gateway.PipelineList(set)
		}
		if *asJSON {
			return writeJSON(stdout, list)
		}
		for _, p := range list.Pipelines {
			fmt.Fprintf(stdout, "%s  (%s)  %s\n", p.Name, p.Source, matchString(p.Match))
			if p.Doc != "" {
				fmt.Fprintf(stdout, "  %s\n", p.Doc)
			}
			for _, s := range p.Steps {
				line := fmt.Sprintf("  - %-12s uses %-11s pool %-5s", s.ID, s.Uses, s.Pool)
				if len(s.Needs) > 0 {
					line += "  needs " + strings.Join(s.Needs, ",")
				}
				if s.When != "" {
					line += "  when " + s.When
				}
				if s.OnError != pipeline.OnErrorFail {
					line += "  on_error " + s.OnError
				}
				fmt.Fprintln(stdout, line)
			}
		}
		return nil
	case "steps":
		types := reg.Types()
		if *asJSON {
			return writeJSON(stdout, types)
		}
		for _, t := range types {
			pool := pipeline.PoolFast
			if t.Heavy {
				pool = pipeline.PoolHeavy
			}
			fmt.Fprintf(stdout, "%s  (%s)  %s\n", t.Name, pool, t.Doc)
			for _, p := range t.Params {
				line := fmt.Sprintf("    %-18s %-16s", p.Name, p.Kind)
				if p.Default != nil {
					line += fmt.Sprintf(" default %v", p.Default)
				}
				if len(p.Enum) > 0 {
					line += " one of " + strings.Join(p.Enum, "|")
				}
				if p.Doc != "" {
					line += "  " + p.Doc
				}
				fmt.Fprintln(stdout, line)
			}
		}
		return nil
	}
	fmt.Fprintf(stderr, "sluice pipelines: unknown subcommand %q\n%s", args[0], pipelinesUsage)
	return exitError{2}
}

func matchString(m wire.PipelineMatch) string {
	var parts []string
	if len(m.ContentTypes) > 0 {
		parts = append(parts, "types "+strings.Join(m.ContentTypes, ","))
	}
	if len(m.Keys) > 0 {
		parts = append(parts, "keys "+strings.Join(m.Keys, ","))
	}
	for k, v := range m.Metadata {
		parts = append(parts, k+"="+v)
	}
	if len(parts) == 0 {
		return "matches everything"
	}
	return "matches " + strings.Join(parts, "; ")
}

// splitJoined returns the errors inside an errors.Join, one per line.
func splitJoined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, splitJoined(e)...)
		}
		return out
	}
	if u := errors.Unwrap(err); u != nil {
		if j, ok := u.(interface{ Unwrap() []error }); ok {
			return splitJoined(j.(error))
		}
	}
	return []error{err}
}
