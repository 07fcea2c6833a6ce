package main

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/sluice-media/sluice/internal/auth"
	"github.com/sluice-media/sluice/internal/client"
	"github.com/sluice-media/sluice/internal/wire"
)

// TestFirstStartPrintsAdminKey: a fresh `sluice serve` creates an admin
// key and prints it once, outside the log; the key works; a second start
// prints nothing.
func TestFirstStartPrintsAdminKey(t *testing.T) {
	dir := t.TempDir()
	c := startChildEnv(t, []string{"SLUICE_ADMIN_TOKEN="}, dir)
	var token string
	for _, l := range c.printed {
		if f := strings.TrimSpace(l); auth.ValidToken(f) {
			token = f
		}
	}
	if token == "" {
		t.Fatalf("no admin key printed; stderr before serving: %q", c.printed)
	}
	keys, err := client.New(c.url, token).Keys(t.Context())
	if err != nil || len(keys.Keys) != 1 || keys.Keys[0].Scopes[0] != auth.ScopeAdmin {
		t.Fatalf("the printed key: %+v %v", keys, err)
	}
	if _, err := client.New(c.url, testToken).Keys(t.Context()); err == nil {
		t.Error("the environment's token was accepted although keys existed already")
	}
	_ = c.cmd.Process.Kill()
	<-c.done
	c.done <- nil // for the cleanup
	again := startChildEnv(t, []string{"SLUICE_ADMIN_TOKEN="}, dir)
	for _, l := range again.printed {
		if strings.Contains(l, auth.TokenPrefix) {
			t.Errorf("second start printed a key: %q", l)
		}
	}
}

// TestKeysCommand creates, lists and revokes keys through the server,
// and through the data dir when no admin key is at hand.
func TestKeysCommand(t *testing.T) {
	url, dataDir := startInProcessDir(t)
	stdout, _, err := runCLI(t, "keys", "create", "--scope", "upload,read", "--name", "web", "--quota-assets", "5", "--server", url)
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(stdout)
	if !auth.ValidToken(token) {
		t.Fatalf("keys create printed %q, want the token alone", stdout)
	}
	stdout, _, err = runCLI(t, "keys", "list", "--json", "--server", url)
	if err != nil {
		t.Fatal(err)
	}
	var list wire.KeyList
	if err := json.Unmarshal([]byte(stdout), &list); err != nil {
		t.Fatal(err)
	}
	var web wire.Key
	for _, k := range list.Keys {
		if k.Name == "web" {
			web = k
		}
	}
	if web.ID == "" || strings.Join(web.Scopes, ",") != "upload,read" || web.Limits.AssetsPerDay != 5 || strings.Contains(stdout, token) {
		t.Fatalf("keys list: %s", stdout)
	}
	// The new key reads but cannot manage keys.
	t.Setenv("SLUICE_API_KEY", token)
	if _, _, err := runCLI(t, "assets", "list", "--server", url); err != nil {
		t.Errorf("assets list with the web key: %v", err)
	}
	_, _, err = runCLI(t, "keys", "list", "--server", url)
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != 403 {
		t.Errorf("keys list with the web key: %v, want 403", err)
	}
	t.Setenv("SLUICE_API_KEY", testToken)
	if _, _, err := runCLI(t, "keys", "revoke", web.ID, "--server", url); err != nil {
		t.Fatal(err)
	}
	if _, err := client.New(url, token).Assets(t.Context(), "", 1); !errors.As(err, &ce) || ce.Status != 401 {
		t.Errorf("revoked key: %v, want 401", err)
	}
	// Recovery without an admin key: straight on the data dir.
	t.Setenv("SLUICE_API_KEY", "")
	stdout, _, err = runCLI(t, "keys", "create", "--scope", "admin", "--name", "recovered", "--data-dir", dataDir)
	if err != nil {
		t.Fatal(err)
	}
	rec := strings.TrimSpace(stdout)
	if _, err := client.New(url, rec).Keys(t.Context()); err != nil {
		t.Errorf("a key made on the data dir, used on the running server: %v", err)
	}
	if _, _, err := runCLI(t, "keys", "create", "--scope", "root", "--data-dir", dataDir); err == nil {
		t.Error("keys create accepted an unknown scope")
	}
	if stdout, _, err := runCLI(t, "keys", "token"); err != nil || !auth.ValidToken(strings.TrimSpace(stdout)) {
		t.Errorf("keys token: %q %v", stdout, err)
	}
}
