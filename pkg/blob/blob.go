// Package blob stores files in the GridFS layout, read and written one chunk at a time by _id.
//
// The layout is GridFS's: a <bucket>.files document per file ({_id, length,
// chunkSize, uploadDate, filename, metadata}) and <bucket>.chunks documents
// {_id, files_id, n, data}, so mongofiles and the drivers' GridFS can read
// what is stored here on MongoDB. What differs is the access path: a chunk's
// _id is "<file id>/<n in 10 digits>", and every read, write and delete names
// one chunk by its _id. FerretDB v1.24 on SQLite pushes down to SQLite only a
// filter that is exactly {_id: <string>}; any other filter is applied in Go
// after reading the whole collection, and sorts are done in memory. The
// drivers' GridFS finds chunks with {files_id} sorted by n, so on FerretDB
// opening one file would read every chunk of every file and hold the file's
// chunks in memory to sort them. By _id, a read is one indexed row.
//
// The files document is written first, with metadata.state "uploading", and
// completed (length, sha256, state "complete") after the last chunk, so an
// upload cut short by a crash leaves a record a sweep can find and remove.
//
// The API writes artifacts and serves export downloads with it; the
// scenario-export service reads artifacts and writes zips with it. It is the
// one copy of the layout both rely on, shared like pkg/events.
package blob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// ChunkSize is the chunk size of new blobs: large enough that a 1 GiB
// file is about a thousand round trips, small enough that a reader and a
// writer each hold only a few of them in memory.
const ChunkSize = 1 << 20

// Blob states, in metadata.state of the files document.
const (
	StateUploading = "uploading"
	StateComplete  = "complete"
)

var (
	// ErrNotFound: no complete blob with that id.
	ErrNotFound = errors.New("blob not found")
	// ErrTooLarge: a write went past the writer's limit.
	ErrTooLarge = errors.New("blob larger than the limit")
	// ErrCorrupt: a chunk is missing or has the wrong length.
	ErrCorrupt = errors.New("blob corrupt")
)

// Bucket is one GridFS bucket: collections <name>.files and <name>.chunks.
type Bucket struct {
	Files, Chunks *mongo.Collection
	chunkSize     int
}

// NewBucket returns the bucket name of db; chunkSize 0 means ChunkSize.
func NewBucket(db *mongo.Database, name string, chunkSize int) *Bucket {
	if chunkSize <= 0 {
		chunkSize = ChunkSize
	}
	return &Bucket{Files: db.Collection(name + ".files"), Chunks: db.Collection(name + ".chunks"), chunkSize: chunkSize}
}

// File is a files document.
type File struct {
	ID         string    `bson:"_id"`
	Length     int64     `bson:"length"`
	ChunkSize  int32     `bson:"chunkSize"`
	UploadDate time.Time `bson:"uploadDate"`
	Filename   string    `bson:"filename"`
	Metadata   Meta      `bson:"metadata"`
}

// Meta is what we keep in a files document's metadata.
type Meta struct {
	State  string `bson:"state"`
	SHA256 string `bson:"sha256,omitempty"` // hex, of the whole content
}

type chunk struct {
	ID      string `bson:"_id"`
	FilesID string `bson:"files_id"`
	N       int32  `bson:"n"`
	Data    []byte `bson:"data"`
}

func chunkID(fileID string, n int64) string { return fmt.Sprintf("%s/%010d", fileID, n) }

// Create starts a blob. filename says what owns it (a sweep uses it to find
// blobs nobody refers to). The writer must end with Commit or Abort.
func (b *Bucket) Create(ctx context.Context, filename string, now time.Time) (*Writer, error) {
	f := File{ID: events.NewID("blob"), ChunkSize: int32(b.chunkSize), UploadDate: now.UTC().Truncate(time.Millisecond),
		Filename: filename, Metadata: Meta{State: StateUploading}}
	if _, err := b.Files.InsertOne(ctx, f); err != nil {
		return nil, fmt.Errorf("create blob for %s: %w", filename, err)
	}
	return &Writer{ctx: ctx, b: b, file: f, buf: make([]byte, 0, b.chunkSize), hash: sha256.New()}, nil
}

// Writer streams one blob into its bucket, a chunk at a time, computing
// its size and sha256 on the way. One chunk is being stored while the next
// fills, so the caller's reading overlaps the round trip; it holds two chunks
// in memory at most.
type Writer struct {
	// ctx is the context of the request or build the writer lives in; io.Writer
	// has no room for one.
	ctx      context.Context
	b        *Bucket
	file     File
	buf      []byte     // the chunk filling
	spare    []byte     // the chunk being stored, reused once stored
	inflight chan error // the store of the previous chunk, nil if none
	n        int64      // chunks handed to the store
	size     int64      // bytes accepted, stored or buffered
	hash     hash.Hash
	limit    int64
	err      error
	done     bool
}

// SetLimit makes writes past n bytes fail with ErrTooLarge; 0 means no limit.
func (w *Writer) SetLimit(n int64) { w.limit = n }

// ID is the blob's id.
func (w *Writer) ID() string { return w.file.ID }

// Size is the number of bytes written so far.
func (w *Writer) Size() int64 { return w.size }

// Write implements io.Writer.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.limit > 0 && w.size+int64(len(p)) > w.limit {
		w.err = fmt.Errorf("%w of %d bytes", ErrTooLarge, w.limit)
		return 0, w.err
	}
	written := 0
	for len(p) > 0 {
		k := min(len(p), cap(w.buf)-len(w.buf))
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
		written += k
		w.size += int64(k)
		if len(w.buf) == cap(w.buf) {
			if err := w.flush(); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

// flush hands the filled chunk to the store, once the previous one is stored.
func (w *Writer) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	if err := w.wait(); err != nil {
		return err
	}
	w.hash.Write(w.buf)
	c := chunk{ID: chunkID(w.file.ID, w.n), FilesID: w.file.ID, N: int32(w.n), Data: w.buf}
	done := make(chan error, 1)
	go func() {
		if _, err := w.b.Chunks.InsertOne(w.ctx, c); err != nil {
			done <- fmt.Errorf("store chunk %d of blob %s: %w", c.N, c.FilesID, err)
			return
		}
		done <- nil
	}()
	w.inflight = done
	w.n++
	if w.spare == nil {
		w.spare = make([]byte, 0, cap(w.buf))
	}
	w.buf, w.spare = w.spare[:0], w.buf
	return nil
}

// wait waits for the chunk in flight to be stored.
func (w *Writer) wait() error {
	if w.inflight == nil {
		return w.err
	}
	err := <-w.inflight
	w.inflight = nil
	if err != nil && w.err == nil {
		w.err = err
	}
	return w.err
}

// Commit stores the last chunk and completes the files document.
func (w *Writer) Commit() (File, error) {
	if w.err != nil {
		return File{}, w.err
	}
	if err := w.flush(); err != nil {
		return File{}, err
	}
	if err := w.wait(); err != nil {
		return File{}, err
	}
	w.file.Length = w.size
	w.file.Metadata = Meta{State: StateComplete, SHA256: hex.EncodeToString(w.hash.Sum(nil))}
	_, err := w.b.Files.UpdateOne(w.ctx, bson.D{{Key: "_id", Value: w.file.ID}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "length", Value: w.file.Length}, {Key: "metadata", Value: w.file.Metadata}}}})
	if err != nil {
		return File{}, fmt.Errorf("complete blob %s: %w", w.file.ID, err)
	}
	w.done = true
	return w.file, nil
}

// Abort removes what was written. It runs even when the writer's context has
// ended (a cancelled request must not leave chunks behind) and is a no-op after Commit.
func (w *Writer) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	_ = w.wait() // the chunk in flight lands, or fails, before the delete
	ctx, cancel := context.WithTimeout(context.WithoutCancel(w.ctx), time.Minute)
	defer cancel()
	return w.b.Delete(ctx, w.file.ID)
}

// Stat returns the files document of id, complete or not.
func (b *Bucket) Stat(ctx context.Context, id string) (File, error) {
	var f File
	err := b.Files.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&f)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return f, fmt.Errorf("blob %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return f, fmt.Errorf("stat blob %s: %w", id, err)
	}
	return f, nil
}

// Delete removes blob id: its chunks, then its files document, so a delete cut
// short leaves a record to finish it from. Deleting a missing blob is not an error.
func (b *Bucket) Delete(ctx context.Context, id string) error {
	f, err := b.Stat(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	// Chunks are written in order, so after a complete file's known count, or
	// at the first gap of an unfinished one, there are no more.
	known := int64(0)
	if f.Metadata.State == StateComplete && f.ChunkSize > 0 {
		known = (f.Length + int64(f.ChunkSize) - 1) / int64(f.ChunkSize)
	}
	for n := int64(0); ; n++ {
		res, err := b.Chunks.DeleteOne(ctx, bson.D{{Key: "_id", Value: chunkID(id, n)}})
		if err != nil {
			return fmt.Errorf("delete chunk %d of blob %s: %w", n, id, err)
		}
		if res.DeletedCount == 0 && n >= known {
			break
		}
	}
	if _, err := b.Files.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}}); err != nil {
		return fmt.Errorf("delete blob %s: %w", id, err)
	}
	return nil
}

// Each calls fn with every files document, in no particular order.
func (b *Bucket) Each(ctx context.Context, fn func(File) error) error {
	cur, err := b.Files.Find(ctx, bson.D{})
	if err != nil {
		return fmt.Errorf("list blobs: %w", err)
	}
	defer cur.Close(ctx)
	for cur.Next(ctx) {
		var f File
		if err := cur.Decode(&f); err != nil {
			return fmt.Errorf("decode blob: %w", err)
		}
		if err := fn(f); err != nil {
			return err
		}
	}
	return cur.Err()
}

// Open returns a reader of the complete blob id. The reader's fetches run
// under ctx; end it (or read to the end) to release them.
func (b *Bucket) Open(ctx context.Context, id string) (*Reader, error) {
	f, err := b.Stat(ctx, id)
	if err != nil {
		return nil, err
	}
	if f.Metadata.State != StateComplete || f.ChunkSize <= 0 {
		return nil, fmt.Errorf("blob %s is %s: %w", id, f.Metadata.State, ErrNotFound)
	}
	return &Reader{ctx: ctx, b: b, file: f, cur: -1}, nil
}

// Reader reads a blob a chunk at a time; it seeks, so http.ServeContent
// can answer Range requests from it. While the caller consumes one chunk the
// next is fetched, so it holds two chunks in memory at most.
type Reader struct {
	ctx  context.Context // as Writer's
	b    *Bucket
	file File
	off  int64
	cur  int64 // index of the chunk in data, -1 for none
	data []byte
	next *fetchResult // the fetch of chunk cur+1, nil if none
}

type fetchResult struct {
	n    int64
	done chan struct{}
	data []byte
	err  error
}

// File is the blob's files document.
func (r *Reader) File() File { return r.file }

// Read implements io.Reader.
func (r *Reader) Read(p []byte) (int, error) {
	if r.off >= r.file.Length {
		return 0, io.EOF
	}
	cs := int64(r.file.ChunkSize)
	n := r.off / cs
	if n != r.cur {
		f := r.next
		if f == nil || f.n != n {
			f = r.fetch(n)
		}
		<-f.done
		r.next = nil
		if f.err != nil {
			return 0, f.err
		}
		want := min(cs, r.file.Length-n*cs)
		if int64(len(f.data)) != want {
			return 0, fmt.Errorf("%w: chunk %d of blob %s has %d bytes, want %d", ErrCorrupt, n, r.file.ID, len(f.data), want)
		}
		r.cur, r.data = n, f.data
		if (n+1)*cs < r.file.Length {
			r.next = r.fetch(n + 1)
		}
	}
	k := copy(p, r.data[r.off-n*cs:])
	r.off += int64(k)
	return k, nil
}

// fetch starts reading chunk n.
func (r *Reader) fetch(n int64) *fetchResult {
	f := &fetchResult{n: n, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		var c struct {
			Data []byte `bson:"data"`
		}
		err := r.b.Chunks.FindOne(r.ctx, bson.D{{Key: "_id", Value: chunkID(r.file.ID, n)}},
			options.FindOne().SetProjection(bson.D{{Key: "data", Value: 1}})).Decode(&c)
		switch {
		case errors.Is(err, mongo.ErrNoDocuments):
			f.err = fmt.Errorf("%w: chunk %d of blob %s is missing", ErrCorrupt, n, r.file.ID)
		case err != nil:
			f.err = fmt.Errorf("read chunk %d of blob %s: %w", n, r.file.ID, err)
		}
		f.data = c.Data
	}()
	return f
}

// Seek implements io.Seeker.
func (r *Reader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.off
	case io.SeekEnd:
		offset += r.file.Length
	default:
		return r.off, fmt.Errorf("seek blob %s: bad whence %d", r.file.ID, whence)
	}
	if offset < 0 {
		return r.off, fmt.Errorf("seek blob %s: negative offset %d", r.file.ID, offset)
	}
	r.off = offset
	return offset, nil
}
