package fileblob_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"strings"

	"github.com/sluice-media/sluice/internal/blob"
	"github.com/sluice-media/sluice/internal/blob/fileblob"
)

func ExampleOpen() {
	dir, err := os.MkdirTemp("", "sluice-data")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	b, err := fileblob.Open(dir, "media")
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	ctx := context.Background()
	content := "hello, sluice"
	a, err := b.Put(ctx, "greetings/hello.txt", strings.NewReader(content), blob.PutOptions{Size: int64(len(content))})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(a.Key, a.Size, a.ContentType, a.ETag)

	o, err := b.Open(ctx, "greetings/hello.txt")
	if err != nil {
		log.Fatal(err)
	}
	defer o.Close()
	data, err := io.ReadAll(o)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(data))
	// Output:
	// greetings/hello.txt 13 text/plain; charset=utf-8 b224d2c7e1c4540d61df14ef95bca9c8
	// hello, sluice
}
