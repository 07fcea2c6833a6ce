// Command sluice is the Sluice media pipeline: `sluice serve` runs the
// whole system on embedded defaults; the other subcommands are clients of
// a running server, authenticating with the API key in SLUICE_API_KEY
// (or the file SLUICE_API_KEY_FILE names). main only parses arguments, wires packages together
// and handles signals.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/sluice-media/sluice/internal/config"
	"github.com/sluice-media/sluice/internal/telemetry"
)

const usage = `Sluice: a self-hostable media and AI pipeline.

Usage:
  sluice serve [flags]                       run everything on embedded defaults
  sluice gateway --nats-url URL [flags]      scale out: HTTP only (API, uploads, delivery)
  sluice worker --nats-url URL --pool fast|heavy|all [flags]
                                             scale out: run jobs only
  sluice upload FILE [--server URL] [--meta k=v]... [--wait] [--json]
  sluice assets get ID [--server URL] [--json]
  sluice assets list [--server URL] [--json] [--limit N]
  sluice assets reprocess ID [--steps a,b] [--wait] [--json]
  sluice dead-letters [--server URL] [--json]
  sluice pipelines validate FILE... | list | steps
  sluice keys create --scope upload,read --name web | list | revoke ID | token | usage

Run 'sluice COMMAND -h' for a command's flags.
`

// exitError carries a process exit code out of a command.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	var ee exitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		os.Exit(ee.code)
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "sluice:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitError{2}
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		return serve(ctx, config.RoleAll, rest, stderr)
	case "gateway":
		return serve(ctx, config.RoleGateway, rest, stderr)
	case "worker":
		return serve(ctx, config.RoleWorker, rest, stderr)
	case "upload":
		return uploadCmd(ctx, rest, stdout, stderr)
	case "assets":
		return assetsCmd(ctx, rest, stdout, stderr)
	case "pipelines":
		return pipelinesCmd(ctx, args[1:], stdout, stderr)
	case "keys":
		return keysCmd(ctx, rest, stdout, stderr)
	case "dead-letters":
		return deadLettersCmd(ctx, rest, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprintf(stderr, "sluice: unknown command %q\n\n%s", cmd, usage)
		return exitError{2}
	}
}

// parseInterspersed parses flags that may come before or after the
// positional arguments ("sluice upload clip.mp4 --wait") and returns
// the positionals.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func newLogger(w io.Writer) *slog.Logger {
	level := slog.LevelInfo
	switch strings.ToLower(os.Getenv("SLUICE_LOG_LEVEL")) {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	return slog.New(telemetry.ContextHandler{Handler: slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})})
}
