package ferretembed_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/avxrm/rm/pkg/embedded/ferretembed"
)

// TestSJSONFastMatchesSlow: FerretDB stores a job and 500 random documents;
// the one-pass reading of each stored row gives the same BSON as the
// encoding/json one, and gives up exactly where that one fails (binary
// data, timestamps).
func TestSJSONFastMatchesSlow(t *testing.T) {
	r := newReplaceRig(t)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(7, 7))
	docs := []bson.D{jobLike(when), {{Key: "s", Value: "<a href=\"x\">&\\\n\t\u2028 é 😀 \x01"}, {Key: "esc", Value: bson.D{{Key: "k<", Value: int32(1)}, {Key: "q\"\\", Value: "v"}}}}}
	for range 500 {
		d, _ := randomDoc(rng, 0)
		docs = append(docs, d)
	}
	fast, slowFailed := 0, 0
	for i, d := range docs {
		id := fmt.Sprintf("sj-%d", i)
		if _, err := r.ferret.InsertOne(ctx, append(bson.D{{Key: "_id", Value: id}}, d...)); err != nil {
			t.Fatal(err)
		}
		row := r.row(t, r.ferret, id)
		want, err := ferretembed.SJSONToBSONSlow(row)
		got, ok := ferretembed.SJSONToBSONFast(row)
		if err != nil {
			slowFailed++
			if ok {
				t.Errorf("row %s: the one-pass reading gave %v where encoding/json failed (%v)", row, bson.Raw(got), err)
			}
			continue
		}
		if !ok {
			t.Errorf("row %s: the one-pass reading gave up; encoding/json read %v", row, bson.Raw(want))
			continue
		}
		fast++
		if !bytes.Equal(got, want) {
			t.Errorf("row %s:\none pass     %v\nencoding/json %v", row, bson.Raw(got), bson.Raw(want))
		}
	}
	t.Logf("%d rows read in one pass, %d left to FerretDB by both", fast, slowFailed)
	if fast < len(docs)/2 || slowFailed == 0 {
		t.Errorf("%d read in one pass, %d failed both ways: the random documents do not cover both", fast, slowFailed)
	}
}

// TestSJSONFastGivesUp: rows the one-pass reading does not expect make it
// give up, never panic, so that the encoding/json reading decides.
func TestSJSONFastGivesUp(t *testing.T) {
	good := `{"$s":{"p":{"a":{"t":"int"}},"$k":["a"]},"a":1}`
	if _, ok := ferretembed.SJSONToBSONFast(good); !ok {
		t.Fatalf("%s: gave up on a plain row", good)
	}
	for _, row := range []string{
		``, `{`, `{"$s":`, `[]`, `{"a":1}`, good[:len(good)-1], good + `x`,
		`{"$s":{"p":{"a":{"t":"int"}},"$k":["a"]},"a":01}`,
		`{"$s":{"p":{"a":{"t":"int"}},"$k":["a"]},"a":1.0}`,
		`{"$s":{"p":{"a":{"t":"int"}},"$k":["a"]},"a":2147483648}`,
		`{"$s":{"p":{"a":{"t":"double"}},"$k":["a"]},"a":NaN}`,
		`{"$s":{"p":{"a":{"t":"double"}},"$k":["a"]},"a":1e400}`,
		`{"$s":{"p":{"a":{"t":"bool"}},"$k":["a"]},"a":tru}`,
		`{"$s":{"p":{"a":{"t":"string"}},"$k":["a"]},"a":"x}`,
		`{"$s":{"p":{"a":{"t":"string"}},"$k":["a"]},"a":"\x"}`,
		`{"$s":{"p":{"a":{"t":"object","$s":{"p":{},"$k":[]}}},"$k":["a"]},"a":{"b":[}}`,
		`{"$s":{"p":{"a":{"t":"array","i":[{"t":"int"}]}},"$k":["a"]},"a":[1,2]}`,
		`{"$s":{"p":{"a":{"t":"int","T":"x"}},"$k":["a"]},"a":1}`,
		`{"$s":{"p":{"a":{"t":"binData"}},"$k":["a"]},"a":"AQ=="}`,
		`{"$s":{"p":{"a":{"t":"int"}},"$k":["a","b"]},"a":1}`,
	} {
		if d, ok := ferretembed.SJSONToBSONFast(row); ok {
			t.Errorf("%q: read as %v; want it left to encoding/json", row, bson.Raw(d))
		}
	}
}

// BenchmarkSJSONToBSON reads a stored job's row both ways.
//
//	go test -run '^$' -bench BenchmarkSJSONToBSON ./ferretembed/
func BenchmarkSJSONToBSON(b *testing.B) {
	_, srv := storeWithJob(b)
	table, sdb := openTable(b, srv, "bench", "jobs")
	var row string
	if err := sdb.QueryRow(fmt.Sprintf(`SELECT _ferretdb_sjson FROM %q`, table)).Scan(&row); err != nil {
		b.Fatal(err)
	}
	b.Run("one-pass", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, ok := ferretembed.SJSONToBSONFast(row); !ok {
				b.Fatal("gave up")
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := ferretembed.SJSONToBSONSlow(row); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// FuzzSJSONFast: on any row the one-pass reading does not panic, and what
// it reads the encoding/json reading reads the same.
func FuzzSJSONFast(f *testing.F) {
	for _, row := range []string{
		`{"$s":{"p":{"a":{"t":"int"}},"$k":["a"]},"a":1}`,
		`{"$s":{"p":{"a":{"t":"object","$s":{"p":{"b":{"t":"string"}},"$k":["b"]}},"c":{"t":"array","i":[{"t":"double"},{"t":"bool"}]}},"$k":["a","c"]},"a":{"b":"x\u00e9"},"c":[1.5,true]}`,
		`{"$s":{"p":{"d":{"t":"date"},"o":{"t":"objectId"},"l":{"t":"long"},"n":{"t":"null"}},"$k":["d","o","l","n"]},"d":-1,"o":"0102030405060708090a0b0c","l":9007199254740993,"n":null}`,
		`{"$s":{"p":{},"$k":[]}}`,
	} {
		f.Add(row)
	}
	f.Fuzz(func(t *testing.T, row string) {
		got, ok := ferretembed.SJSONToBSONFast(row)
		if !ok {
			return
		}
		want, err := ferretembed.SJSONToBSONSlow(row)
		if err != nil {
			t.Fatalf("%q: one pass read %v, encoding/json failed: %v", row, bson.Raw(got), err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%q:\none pass      %v\nencoding/json %v", row, bson.Raw(got), bson.Raw(want))
		}
	})
}
