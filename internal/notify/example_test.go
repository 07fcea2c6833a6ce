package notify_test

import (
	"fmt"

	"github.com/sluice-media/sluice/internal/notify"
)

func ExampleDecodeS3() {
	body := []byte(`{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3",
		"eventTime":"2024-05-24T19:36:44.379Z","eventName":"ObjectCreated:Put",
		"s3":{"bucket":{"name":"media"},
		      "object":{"key":"uploads/red+flower.jpg","size":1024,"eTag":"d41d8cd98f00b204e9800998ecf8427e"}}}]}`)
	events, err := notify.DecodeS3(body)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, e := range events {
		fmt.Printf("%s %s/%s (%d bytes)\n", e.Action, e.Bucket, e.Key, e.Size)
	}
	// Output: PutObject media/uploads/red flower.jpg (1024 bytes)
}

func ExampleDecodeR2() {
	for _, body := range []string{
		`{"account":"3f4b7e3dcab231cbfdaa90a6a28bd548","action":"PutObject","bucket":"media",
		  "object":{"key":"uploads/clip.mp4","size":65536,"eTag":"c846ff7a18f28c2e262116d6e8719ef0"},
		  "eventTime":"2024-05-24T19:36:44.379Z"}`,
		`{"account":"3f4b7e3dcab231cbfdaa90a6a28bd548","action":"DeleteObject","bucket":"media",
		  "object":{"key":"uploads/clip.mp4"},"eventTime":"2024-05-24T19:40:00.000Z"}`,
	} {
		e, created, err := notify.DecodeR2([]byte(body))
		switch {
		case err != nil:
			fmt.Println(err)
		case !created:
			fmt.Println("not a new object")
		default:
			fmt.Printf("%s %s/%s etag %s\n", e.Action, e.Bucket, e.Key, e.ETag)
		}
	}
	// Output:
	// PutObject media/uploads/clip.mp4 etag c846ff7a18f28c2e262116d6e8719ef0
	// not a new object
}
