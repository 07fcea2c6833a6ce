package s3blob_test

import (
	"context"
	"log"
	"os"
	"strings"

	"github.com/sluice-media/sluice/internal/blob"
	"github.com/sluice-media/sluice/internal/blob/s3blob"
)

func Example() {
	ctx := context.Background()
	b, err := s3blob.Open(ctx, s3blob.Config{
		Endpoint:        "https://ACCOUNT.r2.cloudflarestorage.com",
		Region:          "auto",
		Bucket:          "media",
		AccessKeyID:     os.Getenv("SLUICE_S3_ACCESS_KEY_ID"),
		SecretAccessKey: os.Getenv("SLUICE_S3_SECRET_ACCESS_KEY"),
	})
	if err != nil {
		log.Fatal(err)
	}
	a, err := b.Put(ctx, "hello.txt", strings.NewReader("hello"), blob.PutOptions{Size: 5})
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("stored %s: %d bytes, md5 %s", a.Key, a.Size, a.ETag)
}
