package blob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/pkg/embedded/mongotest"
	"go.mongodb.org/mongo-driver/v2/bson"
)

func countDocs(t *testing.T, b *Bucket) (files, chunks int64) {
	t.Helper()
	ctx := context.Background()
	f, err := b.Files.CountDocuments(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := b.Chunks.CountDocuments(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	return f, c
}

func TestBlobRoundTrip(t *testing.T) {
	uri, _ := mongotest.Start(t)
	db := mongotest.Client(t, uri).Database("rm")
	ctx := context.Background()
	b := NewBucket(db, "blobs", 1000) // small chunks: many of them, and a short last one

	for _, size := range []int{0, 1, 999, 1000, 1001, 12345} {
		data := make([]byte, size)
		var seed [32]byte
		seed[0] = byte(size)
		rand.NewChaCha8(seed).Read(data)
		w, err := b.Create(ctx, "test", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		// Odd write sizes cross chunk boundaries.
		for rest := data; len(rest) > 0; {
			k := min(len(rest), 333)
			if _, err := w.Write(rest[:k]); err != nil {
				t.Fatal(err)
			}
			rest = rest[k:]
		}
		f, err := w.Commit()
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		if f.Length != int64(size) || f.Metadata.SHA256 != hex.EncodeToString(sum[:]) || f.Metadata.State != StateComplete {
			t.Fatalf("size %d: committed %+v", size, f)
		}
		r, err := b.Open(ctx, f.ID)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("size %d: read back %d bytes, err %v", size, len(got), err)
		}
		if size > 1500 {
			if _, err := r.Seek(1500, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			part := make([]byte, 10)
			if _, err := io.ReadFull(r, part); err != nil || !bytes.Equal(part, data[1500:1510]) {
				t.Fatalf("size %d: after seek read %x, err %v", size, part, err)
			}
		}
		if err := b.Delete(ctx, f.ID); err != nil {
			t.Fatal(err)
		}
	}
	if files, chunks := countDocs(t, b); files != 0 || chunks != 0 {
		t.Errorf("after deleting everything: %d files, %d chunks", files, chunks)
	}
}

func TestBlobLimitAndAbort(t *testing.T) {
	uri, _ := mongotest.Start(t)
	db := mongotest.Client(t, uri).Database("rm")
	ctx := context.Background()
	b := NewBucket(db, "blobs", 100)
	w, err := b.Create(ctx, "test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	w.SetLimit(450)
	// Small pieces, as a request body arrives.
	_, err = io.CopyBuffer(w, struct{ io.Reader }{strings.NewReader(strings.Repeat("x", 1000))}, make([]byte, 64))
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("copy past the limit = %v", err)
	}
	if _, chunks := countDocs(t, b); chunks == 0 {
		t.Fatal("expected chunks written before the limit")
	}
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	if files, chunks := countDocs(t, b); files != 0 || chunks != 0 {
		t.Errorf("after abort: %d files, %d chunks", files, chunks)
	}
	if _, err := b.Open(ctx, w.ID()); !errors.Is(err, ErrNotFound) {
		t.Errorf("open aborted = %v", err)
	}
}
