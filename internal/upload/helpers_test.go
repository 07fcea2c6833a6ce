package upload

import (
	"encoding/base64"
	"net/url"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func urlQuery(raw string) (url.Values, error) { return url.ParseQuery(raw) }
