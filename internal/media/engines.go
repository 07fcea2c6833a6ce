package media

import (
	"context"
	"errors"
	"fmt"
)

// Engine modes a step may ask for.
const (
	ModeAuto   = "auto"
	ModeWasm   = "wasm"
	ModeNative = "native"
)

// ErrNoEngine means the mode asked for an engine this process lacks.
var ErrNoEngine = errors.New("media: engine not available")

// Engines holds the engines a process has and picks one per run.
//
// Auto, the default, runs parsing and light work (probing, thumbnails,
// stream copies) in the WebAssembly sandbox, where a decoder bug in
// hostile media cannot reach the host, and encodes natively when native
// FFmpeg is installed, because the WebAssembly build encodes many times
// slower. Without native FFmpeg everything runs in WebAssembly.
type Engines struct {
	Native *Native // nil when ffmpeg/ffprobe are not installed
	Wasm   *Wasm   // nil when disabled
	// Default is the mode for steps whose spec names none.
	Default string
}

// Validate checks that a mode can be served by the engines at hand.
func (e *Engines) Validate(mode string) error {
	switch mode {
	case "", ModeAuto:
		if e.Native == nil && e.Wasm == nil {
			return fmt.Errorf("%w: neither native FFmpeg nor the WebAssembly engine", ErrNoEngine)
		}
	case ModeWasm:
		if e.Wasm == nil {
			return fmt.Errorf("%w: the WebAssembly engine is disabled", ErrNoEngine)
		}
	case ModeNative:
		if e.Native == nil {
			return fmt.Errorf("%w: native FFmpeg is not installed (apt-get install ffmpeg)", ErrNoEngine)
		}
	default:
		return fmt.Errorf("media: unknown engine %q (want auto, wasm or native)", mode)
	}
	return nil
}

// Pick returns the engine for a run under mode ("" means Default);
// heavy marks encodes.
func (e *Engines) Pick(mode string, heavy bool) (Engine, error) {
	if mode == "" {
		mode = e.Default
	}
	if err := e.Validate(mode); err != nil {
		return nil, err
	}
	switch {
	case mode == ModeNative:
		return e.Native, nil
	case mode == ModeWasm:
		return e.Wasm, nil
	case heavy && e.Native != nil, e.Wasm == nil:
		return e.Native, nil
	}
	return e.Wasm, nil
}

// Ready reports whether the engines are ready to run.
func (e *Engines) Ready(ctx context.Context) error {
	if e.Wasm != nil {
		return e.Wasm.Ready(ctx)
	}
	return nil
}
