package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/sluice-media/sluice/internal/client"
	"github.com/sluice-media/sluice/internal/wire"
)

// newClient returns an API client for srv with the key from the
// environment: SLUICE_API_KEY, or the file SLUICE_API_KEY_FILE names.
// Keys are never taken from flags, which other users can read in ps.
func newClient(srv string) (*client.Client, error) {
	key := os.Getenv("SLUICE_API_KEY")
	if f := os.Getenv("SLUICE_API_KEY_FILE"); key == "" && f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read SLUICE_API_KEY_FILE: %w", err)
		}
		key = strings.TrimSpace(string(b))
	}
	return client.New(srv, key), nil
}

func defaultServer() string {
	if s := os.Getenv("SLUICE_SERVER"); s != "" {
		return s
	}
	return "http://127.0.0.1:8080"
}

func uploadCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sluice upload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	srv := fs.String("server", defaultServer(), "Sluice server URL (env SLUICE_SERVER)")
	wait := fs.Bool("wait", false, "wait until the asset succeeds or fails; exit 1 if it failed")
	asJSON := fs.Bool("json", false, "print the asset as JSON (the API's shape) and nothing else on stdout")
	tus := fs.Int64("tus-threshold", 32<<20, "files of at least this many bytes are uploaded resumably (tus)")
	timeout := fs.Duration("timeout", time.Hour, "give up waiting after this long")
	meta := map[string]string{}
	fs.Func("meta", "metadata key=value kept with the asset, matched by pipelines (repeatable)", func(v string) error {
		k, val, ok := strings.Cut(v, "=")
		if !ok || k == "" {
			return fmt.Errorf("want key=value, got %q", v)
		}
		meta[k] = val
		return nil
	})
	files, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(files) != 1 {
		fmt.Fprintln(stderr, "usage: sluice upload FILE [--server URL] [--wait] [--json]")
		return exitError{2}
	}
	c, err := newClient(*srv)
	if err != nil {
		return err
	}
	opts := client.UploadOptions{TusThreshold: *tus}
	if len(meta) > 0 {
		opts.Metadata = meta
	}
	var bar *progressBar
	if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		bar = &progressBar{w: stderr}
		opts.Progress = bar.update
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	id, err := c.UploadFile(ctx, files[0], opts)
	bar.done()
	if err != nil {
		return err
	}
	if !*wait {
		if *asJSON {
			return writeJSON(stdout, map[string]string{"asset_id": id})
		}
		fmt.Fprintln(stdout, id)
		return nil
	}
	if !*asJSON {
		fmt.Fprintf(stderr, "uploaded %s; processing...\n", id)
	}
	a, err := c.Wait(ctx, id, 250*time.Millisecond)
	if err != nil {
		return err
	}
	if err := printAsset(stdout, a, *asJSON); err != nil {
		return err
	}
	if a.Status != wire.StatusSucceeded {
		return exitError{1}
	}
	return nil
}

func assetsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: sluice assets get ID | sluice assets list | sluice assets reprocess ID [--steps a,b] [--wait] | sluice assets delete ID")
		return exitError{2}
	}
	fs := flag.NewFlagSet("sluice assets "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	srv := fs.String("server", defaultServer(), "Sluice server URL (env SLUICE_SERVER)")
	asJSON := fs.Bool("json", false, "print JSON")
	limit := fs.Int("limit", 50, "assets per page (list)")
	cursor := fs.String("cursor", "", "page cursor from a previous list (list)")
	steps := fs.String("steps", "", "step ids to run again, comma-separated; default all (reprocess)")
	wait := fs.Bool("wait", false, "wait until the run ends; exit 1 if the asset failed (reprocess)")
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	c, err := newClient(*srv)
	if err != nil {
		return err
	}
	switch args[0] {
	case "get":
		if len(pos) != 1 {
			fmt.Fprintln(stderr, "usage: sluice assets get ID [--json]")
			return exitError{2}
		}
		a, err := c.Asset(ctx, pos[0])
		if err != nil {
			return err
		}
		return printAsset(stdout, a, *asJSON)
	case "delete":
		if len(pos) != 1 {
			fmt.Fprintln(stderr, "usage: sluice assets delete ID")
			return exitError{2}
		}
		if err := c.DeleteAsset(ctx, pos[0]); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "deleted", pos[0])
		return nil
	case "reprocess":
		if len(pos) != 1 {
			fmt.Fprintln(stderr, "usage: sluice assets reprocess ID [--steps a,b] [--wait] [--json]")
			return exitError{2}
		}
		var ids []string
		for _, s := range strings.Split(*steps, ",") {
			if s = strings.TrimSpace(s); s != "" {
				ids = append(ids, s)
			}
		}
		a, err := c.Reprocess(ctx, pos[0], ids)
		if err != nil {
			return err
		}
		if *wait {
			if a, err = c.Wait(ctx, pos[0], 250*time.Millisecond); err != nil {
				return err
			}
		}
		if err := printAsset(stdout, a, *asJSON); err != nil {
			return err
		}
		if *wait && a.Status != wire.StatusSucceeded {
			return exitError{1}
		}
		return nil
	case "list":
		l, err := c.Assets(ctx, *cursor, *limit)
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(stdout, l)
		}
		for _, a := range l.Assets {
			fmt.Fprintf(stdout, "%s  %-10s  %s  %s\n", a.ID, a.Status, a.CreatedAt.Local().Format(time.DateTime), a.Name)
		}
		if l.NextCursor != "" {
			fmt.Fprintf(stdout, "more: sluice assets list --cursor %s\n", l.NextCursor)
		}
		return nil
	default:
		fmt.Fprintf(stderr, "sluice assets: unknown subcommand %q\n", args[0])
		return exitError{2}
	}
}

func deadLettersCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sluice dead-letters", flag.ContinueOnError)
	fs.SetOutput(stderr)
	srv := fs.String("server", defaultServer(), "Sluice server URL (env SLUICE_SERVER)")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	c, err := newClient(*srv)
	if err != nil {
		return err
	}
	l, err := c.DeadLetters(ctx, 0)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, l)
	}
	for _, d := range l.DeadLetters {
		fmt.Fprintf(stdout, "%d  %s  %s  %s\n", d.Seq, d.FailedAt.Local().Format(time.DateTime), d.AssetID, d.Reason)
	}
	return nil
}

func printAsset(w io.Writer, a wire.Asset, asJSON bool) error {
	if asJSON {
		return writeJSON(w, a)
	}
	fmt.Fprintf(w, "%s  %s  %s\n", a.ID, a.Status, a.Name)
	if a.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", a.Error)
	}
	for _, s := range a.Steps {
		line := fmt.Sprintf("  step %-10s %-10s %8.1f ms  attempts %d", s.Name, s.Status, s.DurationMS, s.Attempts)
		if s.Error != "" {
			line += "  " + s.Error
		}
		if s.Reason != "" {
			line += "  (" + s.Reason + ")"
		}
		fmt.Fprintln(w, line)
	}
	for _, o := range a.Outputs {
		fmt.Fprintf(w, "  output %-14s %8d bytes  %s\n", o.Name, o.Size, o.URL)
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// progressBar draws upload progress on a terminal.
type progressBar struct {
	w    io.Writer
	last time.Time
}

func (p *progressBar) update(done, total int64) {
	if time.Since(p.last) < 100*time.Millisecond && done < total {
		return
	}
	p.last = time.Now()
	pct := 100.0
	if total > 0 {
		pct = float64(done) * 100 / float64(total)
	}
	const width = 30
	fill := int(pct / 100 * width)
	fmt.Fprintf(p.w, "\r[%s%s] %5.1f%%  %s / %s", strings.Repeat("=", fill), strings.Repeat(" ", width-fill),
		pct, mib(done), mib(total))
}

func (p *progressBar) done() {
	if p != nil {
		fmt.Fprintln(p.w)
	}
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
