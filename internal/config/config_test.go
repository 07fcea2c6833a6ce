package config_test

import (
	"flag"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/config"
)

func TestEnvThenFlags(t *testing.T) {
	env := map[string]string{
		"SLUICE_ADDR":            "127.0.0.1:9000",
		"SLUICE_DATA_DIR":        "/srv/sluice",
		"SLUICE_CONCURRENCY":     "8",
		"SLUICE_ACK_WAIT":        "45s",
		"SLUICE_MAX_UPLOAD_SIZE": "1048576",
		"SLUICE_CORS_ORIGINS":    "https://a.example,https://b.example",
		"SLUICE_DEV":             "true",
		"SLUICE_IP_RATE":         "2.5",
		"SLUICE_QUOTA_AI_UNITS":  "10.5",
		"SLUICE_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1",
		"SLUICE_ALLOWED_TYPES":   "video/*,image/png",
	}
	c := config.Default()
	if err := c.FromEnv(func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	c.Flags(fs)
	if err := fs.Parse([]string{"--concurrency", "3"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Resolve(); err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:9000" || c.Worker.Concurrency != 3 || c.Queue.AckWait != 45*time.Second ||
		c.Worker.Lease != 45*time.Second || c.Upload.MaxSize != 1<<20 || len(c.CORSOrigins) != 2 {
		t.Errorf("config = %+v", c)
	}
	if !c.Dev || c.Limits.IPRate != 2.5 || c.Quotas.AIUnitsPerDay != 10.5 || len(c.Limits.TrustedProxies) != 2 ||
		strings.Join(c.Upload.AllowedTypes, ",") != "video/*,image/png" {
		t.Errorf("edge settings: dev %v, limits %+v, quotas %+v, types %q", c.Dev, c.Limits, c.Quotas, c.Upload.AllowedTypes)
	}
	if c.Queue.StoreDir != filepath.Join("/srv/sluice", "nats") || c.Upload.TusDir != "/srv/sluice/tus" || c.Worker.ScratchDir != "/srv/sluice/scratch" {
		t.Errorf("derived paths: %q %q %q", c.Queue.StoreDir, c.Upload.TusDir, c.Worker.ScratchDir)
	}
}

func TestInvalid(t *testing.T) {
	for _, tt := range []struct {
		name string
		env  map[string]string
		mod  func(*config.Config)
		want string
	}{
		{"bad number", map[string]string{"SLUICE_CONCURRENCY": "many"}, nil, "SLUICE_CONCURRENCY"},
		{"bad duration", map[string]string{"SLUICE_STEP_TIMEOUT": "soon"}, nil, "SLUICE_STEP_TIMEOUT"},
		{"lease over ack wait", nil, func(c *config.Config) { c.Worker.Lease = time.Hour }, "lease"},
		{"bad public url", nil, func(c *config.Config) { c.PublicURL = "media.example.com" }, "public URL"},
		{"no data dir", nil, func(c *config.Config) { c.DataDir = "" }, "data dir"},
		{"bad bool", map[string]string{"SLUICE_DEV": "maybe"}, nil, "SLUICE_DEV"},
		{"bad float", map[string]string{"SLUICE_IP_RATE": "fast"}, nil, "SLUICE_IP_RATE"},
		{"dev on every interface", nil, func(c *config.Config) { c.Dev = true }, "loopback"},
		{"dev on a public address", nil, func(c *config.Config) { c.Dev, c.Addr = true, "192.0.2.1:80" }, "loopback"},
		{"allow every type", nil, func(c *config.Config) { c.Upload.AllowedTypes = []string{"*/*"} }, "type pattern"},
		{"allow text", nil, func(c *config.Config) { c.Upload.AllowedTypes = []string{"text/*"} }, "never accepted"},
		{"bad delivery", nil, func(c *config.Config) { c.Delivery = "secret" }, "delivery"},
		{"tls cert without key", nil, func(c *config.Config) { c.TLSCert = "cert.pem" }, "tls-key"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := config.Default()
			err := c.FromEnv(func(k string) string { return tt.env[k] })
			if err == nil {
				if tt.mod != nil {
					tt.mod(&c)
				}
				err = c.Resolve()
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}
