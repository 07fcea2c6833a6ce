package pipeline

// Media is the probe summary of an input: what the API shows as an asset's
// "media" and what steps consult to decide whether they apply.
type Media struct {
	// Duration in seconds; 0 when unknown (a still image).
	Duration float64 `json:"duration"`
	// Container is the demuxer's name list as ffprobe reports it
	// ("mov,mp4,m4a,3gp,3g2,mj2").
	Container string `json:"container"`
	// Format is the single demuxer later steps must use, pinned so that
	// FFmpeg never re-detects the input as something else.
	Format  string `json:"format"`
	BitRate int64  `json:"bit_rate,omitempty"`
	// Width and Height of the first video stream as displayed, that is
	// after Rotation is applied.
	Width    int      `json:"width,omitempty"`
	Height   int      `json:"height,omitempty"`
	Rotation int      `json:"rotation"`
	Streams  []Stream `json:"streams"`
}

// Stream is one elementary stream of the input.
type Stream struct {
	Index         int     `json:"index"`
	Type          string  `json:"type"` // video, audio, subtitle, data, attachment
	Codec         string  `json:"codec"`
	Profile       string  `json:"profile,omitempty"`
	Width         int     `json:"width,omitempty"` // coded, before rotation
	Height        int     `json:"height,omitempty"`
	PixelFormat   string  `json:"pix_fmt,omitempty"`
	FrameRate     float64 `json:"frame_rate,omitempty"`
	SampleRate    int     `json:"sample_rate,omitempty"`
	Channels      int     `json:"channels,omitempty"`
	ChannelLayout string  `json:"channel_layout,omitempty"`
	Duration      float64 `json:"duration,omitempty"`
	BitRate       int64   `json:"bit_rate,omitempty"`
	// AttachedPicture marks cover art in audio files, which is not video.
	AttachedPicture bool `json:"attached_picture,omitempty"`
}

// Video returns the first real video stream (not cover art), or nil.
func (m *Media) Video() *Stream {
	for i := range m.Streams {
		if s := &m.Streams[i]; s.Type == "video" && !s.AttachedPicture {
			return s
		}
	}
	return nil
}

// Audio returns the first audio stream, or nil.
func (m *Media) Audio() *Stream {
	for i := range m.Streams {
		if s := &m.Streams[i]; s.Type == "audio" {
			return s
		}
	}
	return nil
}
