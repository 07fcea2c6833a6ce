package blob

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateKey(t *testing.T) {
	tests := []struct {
		name  string
		key   string
		valid bool
	}{
		{"plain", "a", true},
		{"nested", "a/b/c.jpg", true},
		{"dots in a name", "a..b/c.d", true},
		{"dot-led name", ".hidden/x", true}, // drivers may reserve these
		{"three dots", "...", true},
		{"spaces", "my video/take 1.mp4", true},
		{"unicode", "ünï/ключ/動画.mp4", true},
		{"1024 bytes", strings.Repeat("k", 1024), true},
		{"empty", "", false},
		{"absolute", "/abs", false},
		{"dot dot", "a/../b", false},
		{"leading dot dot", "../a", false},
		{"trailing dot dot", "a/..", false},
		{"only dot dot", "..", false},
		{"dot", "a/./b", false},
		{"only dot", ".", false},
		{"double slash", "a//b", false},
		{"only slash", "/", false},
		{"backslash", `a\b`, false},
		{"trailing slash", "trailing/", false},
		{"control char", "a\x01b", false},
		{"nul", "a\x00b", false},
		{"newline", "a\nb", false},
		{"tab", "a\tb", false},
		{"del", "a\x7fb", false},
		{"1025 bytes", strings.Repeat("k", 1025), false},
		{"C1 control", "a\u0085b", false},
		{"invalid utf-8", "a\xffb", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateKey(tt.key)
			if got := err == nil; got != tt.valid {
				t.Errorf("ValidateKey(%q) = %v, want valid %t", tt.key, err, tt.valid)
			}
			if err != nil && !errors.Is(err, ErrInvalidKey) {
				t.Errorf("ValidateKey(%q) = %v, want %v", tt.key, err, ErrInvalidKey)
			}
		})
	}
}
