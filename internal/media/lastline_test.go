package media

import "testing"

// TestLastLinePaths: failure reasons shown to clients carry no host paths.
func TestLastLinePaths(t *testing.T) {
	for in, want := range map[string]string{
		"file:/tmp/x/nested.mkv: End of file":         "input: End of file",
		"/in/clip.mp4: Invalid data":                  "input: Invalid data",
		"[mjpeg @ 0x1] Invalid frame rate 30000/1001": "Invalid frame rate 30000/1001",
		"Error opening '/tmp/a b': No such":           "Error opening 'input b': No such",
	} {
		if got := lastLine(in); got != want {
			t.Errorf("lastLine(%q) = %q, want %q", in, got, want)
		}
	}
}
