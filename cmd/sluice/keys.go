package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluice-media/sluice/internal/auth"
	"github.com/sluice-media/sluice/internal/gateway"
	"github.com/sluice-media/sluice/internal/store"
	"github.com/sluice-media/sluice/internal/store/sqlite"
	"github.com/sluice-media/sluice/internal/wire"
)

const keysUsage = `usage:
  sluice keys create --scope upload,read [--name NAME] [--rate N] [--quota-bytes N] ... [--json]
  sluice keys list [--json]
  sluice keys revoke ID
  sluice keys token          print a new random token (for SLUICE_ADMIN_TOKEN)
  sluice keys usage          the calling key's use today

They talk to the server (--server, SLUICE_API_KEY with the admin scope),
or, with --data-dir, straight to a data dir's state (to recover when no
admin key is left).`

// keyAPI is what the keys command does, through the server or straight
// on a data dir.
type keyAPI interface {
	create(ctx context.Context, r wire.KeyRequest) (wire.KeyCreated, error)
	list(ctx context.Context) ([]wire.Key, error)
	revoke(ctx context.Context, id string) error
}

func keysCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, keysUsage)
		return exitError{2}
	}
	sub := args[0]
	fs := flag.NewFlagSet("sluice keys "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	srv := fs.String("server", defaultServer(), "Sluice server URL (env SLUICE_SERVER)")
	dataDir := fs.String("data-dir", "", "work on this data dir's state directly instead of through a server")
	asJSON := fs.Bool("json", false, "print JSON")
	name := fs.String("name", "", "a name to recognize the key by (create)")
	scopes := fs.String("scope", "", "comma-separated scopes: upload, read, admin (create)")
	var lim wire.Limits
	fs.Float64Var(&lim.RatePerSecond, "rate", 0, "requests per second for this key; 0: the server default (create)")
	fs.IntVar(&lim.Burst, "burst", 0, "burst of requests for this key (create)")
	fs.Int64Var(&lim.BytesPerDay, "quota-bytes", 0, "bytes per UTC day; 0: the server default (create)")
	fs.Int64Var(&lim.AssetsPerDay, "quota-assets", 0, "assets per UTC day; 0: the server default (create)")
	fs.Float64Var(&lim.AIUnitsPerDay, "quota-ai-units", 0, "AI units per UTC day; 0: the server default (create)")
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	if sub == "token" {
		fmt.Fprintln(stdout, auth.NewToken())
		return nil
	}
	var api keyAPI
	if *dataDir != "" {
		st, err := sqlite.Open(ctx, filepath.Join(*dataDir, "state.db"))
		if err != nil {
			return err
		}
		defer st.Close()
		api = localKeys{auth.NewKeys(st, store.Limits{})}
	} else {
		c, err := newClient(*srv)
		if err != nil {
			return err
		}
		if sub == "usage" {
			u, err := c.Usage(ctx)
			if err != nil {
				return err
			}
			return writeJSON(stdout, u)
		}
		api = remoteKeys{c}
	}
	switch sub {
	case "create":
		sc, err := auth.ParseScopes(*scopes)
		if err != nil {
			return err
		}
		k, err := api.create(ctx, wire.KeyRequest{Name: *name, Scopes: sc, Limits: lim})
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(stdout, k)
		}
		fmt.Fprintf(stderr, "created %s (%s) with scopes %s; the token is shown only this once:\n",
			k.ID, k.Name, strings.Join(k.Scopes, ","))
		fmt.Fprintln(stdout, k.Token)
		return nil
	case "list":
		keys, err := api.list(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(stdout, wire.KeyList{Keys: keys})
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tPREFIX\tSCOPES\tCREATED\tREVOKED")
		for _, k := range keys {
			revoked := "-"
			if k.RevokedAt != nil {
				revoked = k.RevokedAt.Format(time.DateTime)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s…\t%s\t%s\t%s\n", k.ID, k.Name, k.Prefix, strings.Join(k.Scopes, ","),
				k.CreatedAt.Format(time.DateTime), revoked)
		}
		return tw.Flush()
	case "revoke":
		if len(pos) != 1 {
			fmt.Fprintln(stderr, "usage: sluice keys revoke ID")
			return exitError{2}
		}
		if err := api.revoke(ctx, pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "revoked %s\n", pos[0])
		return nil
	default:
		fmt.Fprintln(stderr, keysUsage)
		return exitError{2}
	}
}

type remoteKeys struct {
	c interface {
		CreateKey(context.Context, wire.KeyRequest) (wire.KeyCreated, error)
		Keys(context.Context) (wire.KeyList, error)
		RevokeKey(context.Context, string) error
	}
}

func (r remoteKeys) create(ctx context.Context, req wire.KeyRequest) (wire.KeyCreated, error) {
	return r.c.CreateKey(ctx, req)
}

func (r remoteKeys) list(ctx context.Context) ([]wire.Key, error) {
	l, err := r.c.Keys(ctx)
	return l.Keys, err
}

func (r remoteKeys) revoke(ctx context.Context, id string) error { return r.c.RevokeKey(ctx, id) }

type localKeys struct{ k *auth.Keys }

func (l localKeys) create(ctx context.Context, req wire.KeyRequest) (wire.KeyCreated, error) {
	rec, token, err := l.k.Create(ctx, auth.NewKey{Name: req.Name, Scopes: req.Scopes, Limits: store.Limits(req.Limits)})
	if err != nil {
		return wire.KeyCreated{}, err
	}
	return wire.KeyCreated{Key: gateway.KeyView(rec), Token: token}, nil
}

func (l localKeys) list(ctx context.Context) ([]wire.Key, error) {
	keys, err := l.k.List(ctx)
	out := []wire.Key{}
	for _, k := range keys {
		out = append(out, gateway.KeyView(k))
	}
	return out, err
}

func (l localKeys) revoke(ctx context.Context, id string) error { return l.k.Revoke(ctx, id) }
