package ferretembed_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// TestFindDirectMatchesFerretDB stores documents (a job's shape, every
// scalar, random ones, some with types the conversion leaves to FerretDB)
// and reads each by _id through FerretDB and from SQLite: the replies must
// be the same bytes, and SQLite must have answered every find it can.
func TestFindDirectMatchesFerretDB(t *testing.T) {
	r := newReplaceRig(t)
	ctx := context.Background()
	cases := []directCase{
		{"job-like", jobLike(when), true},
		{"every scalar", bson.D{{Key: "s", Value: "<a href=\"x\">&\\\n\t\u2028 é 😀"}, {Key: "i32", Value: int32(-5)},
			{Key: "i64", Value: int64(1) << 62}, {Key: "d", Value: 0.1}, {Key: "dwhole", Value: 3.0}, {Key: "dbig", Value: 1e21},
			{Key: "dsmall", Value: -2.5e-300}, {Key: "t", Value: true}, {Key: "null", Value: nil},
			{Key: "date", Value: bson.DateTime(-62135596800001)}, {Key: "oid", Value: bson.ObjectID{9, 8, 7}},
			{Key: "e", Value: bson.D{}}, {Key: "a", Value: bson.A{}}, {Key: "esc", Value: bson.D{{Key: "k<", Value: int32(1)}, {Key: "q\"\\", Value: "v"}}}}, true},
		{"binary", bson.D{{Key: "b", Value: bson.Binary{Data: []byte{1}}}}, false},
		{"nested timestamp", bson.D{{Key: "n", Value: bson.D{{Key: "ts", Value: bson.Timestamp{T: 1}}}}}, false},
	}
	cases = randomCases(cases, 3, 200, nil)
	find := bson.D{{Key: "find", Value: "ferret"}, {Key: "filter", Value: bson.D{{Key: "_id", Value: "ID"}}},
		{Key: "limit", Value: int64(1)}, {Key: "singleBatch", Value: true}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r.srv.SetDirect(false)
			if _, err := r.ferret.DeleteOne(ctx, bson.D{{Key: "_id", Value: "ID"}}); err != nil {
				t.Fatal(err)
			}
			if _, err := r.ferret.InsertOne(ctx, append(bson.D{{Key: "_id", Value: "ID"}}, c.doc...)); err != nil {
				t.Fatal(err)
			}
			// The services' exclusions: one of the document's fields (or
			// none there) and one it may not have, as int32, int64 and bool.
			drop := "runtime"
			if len(c.doc) > 0 {
				drop = c.doc[0].Key
			}
			exclusion := bson.D{{Key: drop, Value: int32(0)}, {Key: "_outbox", Value: false}, {Key: "absent", Value: int64(0)}}
			// The outbox's inclusion, and one of the document's fields
			// named after a later one.
			keep := "_outbox"
			if len(c.doc) > 1 {
				keep = c.doc[len(c.doc)-1].Key
			}
			inclusion := bson.D{{Key: keep, Value: int32(1)}, {Key: drop, Value: true}, {Key: "absent", Value: int64(1)}}
			finds := []bson.D{find, append(append(bson.D{}, find...), bson.E{Key: "projection", Value: exclusion}),
				append(append(bson.D{}, find...), bson.E{Key: "projection", Value: inclusion})}
			var replies [2][]bson.Raw
			var docs [2][]bson.Raw
			a0, f0 := r.srv.DirectFindStats()
			for i, on := range []bool{false, true} {
				r.srv.SetDirect(on)
				for _, cmd := range finds {
					reply, err := r.ferret.Database().RunCommand(ctx, cmd).Raw()
					if err != nil {
						t.Fatal(err)
					}
					replies[i] = append(replies[i], reply)
				}
				for _, opts := range []*options.FindOneOptionsBuilder{options.FindOne(), options.FindOne().SetProjection(exclusion), options.FindOne().SetProjection(inclusion)} {
					doc, err := r.ferret.FindOne(ctx, bson.D{{Key: "_id", Value: "ID"}}, opts).Raw()
					if err != nil {
						t.Fatal(err)
					}
					docs[i] = append(docs[i], doc)
				}
			}
			a1, f1 := r.srv.DirectFindStats()
			for k := range replies[0] {
				if !bytes.Equal(replies[0][k], replies[1][k]) {
					t.Errorf("replies to find %d differ:\nFerretDB %s\nSQLite   %s", k, replies[0][k], replies[1][k])
				}
				if !bytes.Equal(docs[0][k], docs[1][k]) {
					t.Errorf("FindOne %d differs:\nFerretDB %s\nSQLite   %s", k, docs[0][k], docs[1][k])
				}
			}
			if c.direct && (a1-a0 != 6 || f1 != f0) {
				t.Errorf("SQLite answered %d of 6 finds, left %d to FerretDB", a1-a0, f1-f0)
			}
			if !c.direct && (a1 != a0 || f1-f0 != 6) {
				t.Errorf("SQLite answered %d finds and left %d to FerretDB; want 0 and 6", a1-a0, f1-f0)
			}
		})
	}
}

// TestFindDirectScope: a miss is answered from SQLite as FerretDB answers
// it; finds with other options, of other filters, or on a collection that
// does not exist go to FerretDB.
func TestFindDirectScope(t *testing.T) {
	r := newReplaceRig(t)
	ctx := context.Background()
	r.srv.SetDirect(true)
	if _, err := r.ferret.InsertOne(ctx, bson.D{{Key: "_id", Value: "x"}, {Key: "a", Value: int32(1)}, {Key: "b", Value: "y"}}); err != nil {
		t.Fatal(err)
	}
	a0, _ := r.srv.DirectFindStats()
	if err := r.ferret.FindOne(ctx, bson.D{{Key: "_id", Value: "missing"}}).Err(); err != mongo.ErrNoDocuments {
		t.Errorf("find of a missing _id: %v, want no documents", err)
	}
	if a1, _ := r.srv.DirectFindStats(); a1-a0 != 1 {
		t.Errorf("SQLite answered %d finds of a missing _id, want 1", a1-a0)
	}
	// With a deadline the driver sends maxTimeMS: answered all the same.
	dctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	a0, _ = r.srv.DirectFindStats()
	if err := r.ferret.FindOne(dctx, bson.D{{Key: "_id", Value: "x"}}).Err(); err != nil {
		t.Errorf("find with a deadline: %v", err)
	}
	if a1, _ := r.srv.DirectFindStats(); a1-a0 != 1 {
		t.Errorf("SQLite answered %d finds with maxTimeMS, want 1", a1-a0)
	}
	var viaFind []bson.Raw
	cur, err := r.ferret.Find(ctx, bson.D{{Key: "_id", Value: "x"}}, options.Find().SetLimit(1))
	if err != nil || cur.All(ctx, &viaFind) != nil || len(viaFind) != 1 {
		t.Fatalf("find with limit 1: %v, %d documents", err, len(viaFind))
	}
	a0, _ = r.srv.DirectFindStats()
	for _, f := range []func() error{
		func() error {
			return r.ferret.FindOne(ctx, bson.D{{Key: "_id", Value: "x"}}, options.FindOne().SetProjection(bson.D{{Key: "a", Value: 2}})).Err()
		},
		func() error {
			return r.ferret.FindOne(ctx, bson.D{{Key: "_id", Value: "x"}}, options.FindOne().SetProjection(bson.D{{Key: "_id", Value: 0}})).Err()
		},
		func() error {
			return r.ferret.FindOne(ctx, bson.D{{Key: "_id", Value: "x"}}, options.FindOne().SetProjection(bson.D{{Key: "a.b", Value: 0}})).Err()
		},
		func() error { // FerretDB refuses it: its error is the answer
			err := r.ferret.FindOne(ctx, bson.D{{Key: "_id", Value: "x"}}, options.FindOne().SetProjection(bson.D{{Key: "a", Value: 0}, {Key: "b", Value: 1}})).Err()
			if err == nil || !strings.Contains(err.Error(), "exclusion projection") {
				return fmt.Errorf("a mixed projection: %v, want FerretDB's refusal", err)
			}
			return nil
		},
		func() error {
			return r.ferret.FindOne(ctx, bson.D{{Key: "_id", Value: "x"}, {Key: "a", Value: bson.D{{Key: "$gt", Value: int32(0)}}}}).Err()
		},
		func() error { return r.ferret.FindOne(ctx, bson.D{{Key: "a", Value: int32(1)}}).Err() },
		func() error {
			err := r.ferret.Database().Collection("none").FindOne(ctx, bson.D{{Key: "_id", Value: "x"}}).Err()
			if err == mongo.ErrNoDocuments {
				return nil
			}
			return err
		},
		func() error {
			err := r.ferret.Database().Client().Database("nodb").Collection("c").FindOne(ctx, bson.D{{Key: "_id", Value: "x"}}).Err()
			if err == mongo.ErrNoDocuments {
				return nil
			}
			return err
		},
	} {
		if err := f(); err != nil {
			t.Errorf("find: %v", err)
		}
	}
	if a1, _ := r.srv.DirectFindStats(); a1 != a0 {
		t.Errorf("SQLite answered %d finds outside its scope", a1-a0)
	}
}

// TestFindDirectByFields: look-ups by equality of top-level fields (the
// services' by name, by is_default) get the same reply from SQLite as from
// FerretDB, byte for byte; those whose answer FerretDB could give otherwise
// (a field stored as an array, more documents than one batch) are FerretDB's.
func TestFindDirectByFields(t *testing.T) {
	r := newReplaceRig(t)
	ctx := context.Background()
	r.srv.SetDirect(false)
	coll := r.ferret.Database().Collection("lookups")
	var docs []any
	for i := range 150 {
		d := bson.D{{Key: "_id", Value: fmt.Sprintf("d%03d", i)}, {Key: "name", Value: fmt.Sprintf("n%d", i%3)},
			{Key: "kind", Value: "many"}, {Key: "is_default", Value: i == 7}, {Key: "n", Value: int32(i)}}
		if i%10 == 0 {
			d = append(d, bson.E{Key: "_deleted", Value: true})
		}
		if i == 20 {
			d = append(d, bson.E{Key: "tags", Value: bson.A{"x", "y"}})
		} else if i%4 == 0 {
			d = append(d, bson.E{Key: "tags", Value: "x"})
		}
		switch { // a claim: a document (the export service's), or an array or a string on the path
		case i == 25:
			d = append(d, bson.E{Key: "claim", Value: bson.A{bson.D{{Key: "owner", Value: "o1"}}}})
		case i == 35:
			d = append(d, bson.E{Key: "claim", Value: "o1"})
		case i%5 == 0:
			d = append(d, bson.E{Key: "claim", Value: bson.D{{Key: "owner", Value: fmt.Sprintf("o%d", i%2)}, {Key: "until", Value: bson.DateTime(1764547200000 + int64(i))}}})
		}
		docs = append(docs, d)
	}
	// Two whose _ids sort first, stored last: FerretDB answers in the
	// table's order, not the _ids'.
	docs = append(docs, bson.D{{Key: "_id", Value: "a1"}, {Key: "name", Value: "late"}, {Key: "n", Value: int32(-1)}},
		bson.D{{Key: "_id", Value: "a0"}, {Key: "name", Value: "late"}, {Key: "n", Value: int32(-2)}})
	if _, err := coll.InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}
	if err := r.srv.EnsureIDIndex(ctx, "replace", "lookups"); err != nil {
		t.Fatal(err)
	}
	notDeleted := bson.E{Key: "_deleted", Value: bson.D{{Key: "$exists", Value: false}}}
	find := func(filter bson.D, opts ...bson.E) bson.D {
		return append(bson.D{{Key: "find", Value: "lookups"}, {Key: "filter", Value: filter}}, opts...)
	}
	limit1 := []bson.E{{Key: "limit", Value: int64(1)}, {Key: "singleBatch", Value: true}}
	in := func(ids ...any) bson.D {
		return bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: append(bson.A{}, ids...)}}}}
	}
	var all []any
	for i := range 150 {
		all = append(all, fmt.Sprintf("d%03d", i))
	}
	some := in("d005", "a1", "d003", "missing", "d003", "a0", "d010")
	for _, c := range []struct {
		name   string
		cmd    bson.D
		direct bool
	}{
		{"by name, FindOne", find(bson.D{{Key: "name", Value: "n1"}, notDeleted}, limit1...), true},
		{"by is_default, all", find(bson.D{{Key: "is_default", Value: true}, notDeleted}), true},
		{"by bool, none deleted", find(bson.D{{Key: "is_default", Value: false}, {Key: "name", Value: "n2"}}, bson.E{Key: "limit", Value: int32(3)}), true},
		{"a string never matches a bool", find(bson.D{{Key: "is_default", Value: "true"}}), true},
		{"nothing", find(bson.D{{Key: "name", Value: "none"}, notDeleted}), true},
		{"more than a batch, single batch", find(bson.D{{Key: "kind", Value: "many"}}, bson.E{Key: "singleBatch", Value: true}), true},
		{"more than a batch, limit within it", find(bson.D{{Key: "kind", Value: "many"}}, bson.E{Key: "limit", Value: int64(5)}), true},
		{"just under a batch", find(bson.D{{Key: "kind", Value: "many"}}, bson.E{Key: "batchSize", Value: int32(151)}), true},
		{"exactly a batch: a cursor", find(bson.D{{Key: "kind", Value: "many"}}, bson.E{Key: "batchSize", Value: int32(150)}), false},
		{"a limit of a batch: a cursor", find(bson.D{{Key: "kind", Value: "many"}}, bson.E{Key: "limit", Value: int32(101)}), false},
		{"more than a batch: a cursor", find(bson.D{{Key: "kind", Value: "many"}}), false},
		{"more than the batch size: a cursor", find(bson.D{{Key: "name", Value: "n0"}}, bson.E{Key: "batchSize", Value: int32(10)}), false},
		{"a field stored as an array", find(bson.D{{Key: "tags", Value: "x"}}), false},
		{"an array row beyond the limit", find(bson.D{{Key: "tags", Value: "x"}}, limit1...), true},
		{"a number: FerretDB's", find(bson.D{{Key: "n", Value: int32(3)}}), false},
		{"$exists true: FerretDB's", find(bson.D{{Key: "name", Value: "n0"}, {Key: "_deleted", Value: bson.D{{Key: "$exists", Value: true}}}}), false},
		{"a projection that sets a value: FerretDB's", find(bson.D{{Key: "name", Value: "n0"}}, bson.E{Key: "projection", Value: bson.D{{Key: "n", Value: "v"}}}), false},
		{"an inclusion", find(bson.D{{Key: "name", Value: "n0"}}, bson.E{Key: "projection", Value: bson.D{{Key: "tags", Value: 1}, {Key: "n", Value: true}}}), true},
		{"an inclusion with _id", find(bson.D{{Key: "name", Value: "n0"}}, bson.E{Key: "projection", Value: bson.D{{Key: "_id", Value: 1}, {Key: "tags", Value: 1}}}), true},
		{"_id alone: FerretDB's", find(bson.D{{Key: "name", Value: "n0"}}, bson.E{Key: "projection", Value: bson.D{{Key: "_id", Value: true}}}), false},
		{"an inclusion without _id: FerretDB's", find(bson.D{{Key: "name", Value: "n0"}}, bson.E{Key: "projection", Value: bson.D{{Key: "_id", Value: 0}, {Key: "tags", Value: 1}}}), false},
		{"an exclusion", find(bson.D{{Key: "name", Value: "n0"}}, bson.E{Key: "projection", Value: bson.D{{Key: "n", Value: 0}, {Key: "tags", Value: false}}}), true},
		{"by _id, not deleted", find(bson.D{{Key: "_id", Value: "d005"}, notDeleted}, limit1...), true},
		{"by _id, deleted", find(bson.D{{Key: "_id", Value: "d010"}, notDeleted}, limit1...), true},
		{"by _id and a name that matches", find(bson.D{{Key: "name", Value: "n1"}, {Key: "_id", Value: "d004"}}), true},
		{"by _id and a name that does not", find(bson.D{{Key: "_id", Value: "d004"}, {Key: "name", Value: "n2"}}), true},
		{"by _id and a field stored as an array", find(bson.D{{Key: "_id", Value: "d020"}, {Key: "tags", Value: "x"}}), false},
		{"by _id twice: FerretDB's", find(bson.D{{Key: "_id", Value: "d004"}, {Key: "_id", Value: "d005"}}), false},
		{"by a number _id and more: FerretDB's", find(bson.D{{Key: "_id", Value: int32(4)}, notDeleted}), false},
		{"by names in a list", find(bson.D{{Key: "name", Value: bson.D{{Key: "$in", Value: bson.A{"late", "n2", "none"}}}}, notDeleted}), true},
		{"by a name in a list, FindOne", find(bson.D{{Key: "name", Value: bson.D{{Key: "$in", Value: bson.A{"x", "n1"}}}}, {Key: "kind", Value: "many"}, notDeleted}, limit1...), true},
		{"in a list, a field stored as an array", find(bson.D{{Key: "tags", Value: bson.D{{Key: "$in", Value: bson.A{"y"}}}}}), false},
		{"in a list, a number among them: FerretDB's", find(bson.D{{Key: "name", Value: bson.D{{Key: "$in", Value: bson.A{"n1", int32(3)}}}}}), false},
		{"in an empty list: FerretDB's", find(bson.D{{Key: "name", Value: bson.D{{Key: "$in", Value: bson.A{}}}}}), false},
		{"by _ids", find(some), true},
		{"an empty projection", find(bson.D{{Key: "name", Value: "n0"}}, bson.E{Key: "projection", Value: bson.D{}}), true},
		{"by _ids, an empty projection", find(some, bson.E{Key: "projection", Value: bson.D{}}), true},
		{"by _ids, an exclusion", find(some, bson.E{Key: "projection", Value: bson.D{{Key: "n", Value: 0}}}), true},
		{"by _ids, an inclusion", find(some, bson.E{Key: "projection", Value: bson.D{{Key: "name", Value: 1}}}), true},
		{"by _ids, a limit", find(some, bson.E{Key: "limit", Value: int64(2)}), true},
		{"by _ids, none there", find(in("x", "y")), true},
		{"by _ids, a number among them: FerretDB's", find(in("d001", int32(5))), false},
		{"by _ids, none listed: FerretDB's", find(in()), false},
		{"by _ids, another operator: FerretDB's", find(bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: bson.A{"d001"}}, {Key: "$ne", Value: "x"}}}}), false},
		{"by _ids, more than a batch: a cursor", find(in(all...)), false},
		{"by _ids, more than a batch, single batch", find(in(all...), bson.E{Key: "singleBatch", Value: true}), true},
		// Conditions beside the _id or the _ids, evaluated in Go.
		{"by _id and a number", find(bson.D{{Key: "_id", Value: "d004"}, {Key: "n", Value: 4.0}}, limit1...), true},
		{"by _id and a number that does not match", find(bson.D{{Key: "_id", Value: "d004"}, {Key: "n", Value: int64(5)}}), true},
		{"by _id, $exists true", find(bson.D{{Key: "_id", Value: "d010"}, {Key: "_deleted", Value: bson.D{{Key: "$exists", Value: true}}}}), true},
		{"by _id, $ne", find(bson.D{{Key: "_id", Value: "d011"}, {Key: "name", Value: bson.D{{Key: "$ne", Value: "n2"}}}}), true},
		{"by _id and null: a field missing", find(bson.D{{Key: "_id", Value: "d001"}, {Key: "tags", Value: nil}}), true},
		{"by _id and a path into a document", find(bson.D{{Key: "_id", Value: "d015"}, {Key: "claim.owner", Value: "o1"}, {Key: "n", Value: int32(15)}}), true},
		{"by _id and a path, another owner", find(bson.D{{Key: "_id", Value: "d015"}, {Key: "claim.owner", Value: "o0"}}), true},
		{"by _id and a date on a path", find(bson.D{{Key: "_id", Value: "d015"}, {Key: "claim.until", Value: bson.DateTime(1764547200015)}}), true},
		{"by _id and a path whose document is missing", find(bson.D{{Key: "_id", Value: "d001"}, {Key: "claim.owner", Value: bson.D{{Key: "$exists", Value: false}}}}), true},
		{"by _id and a path through an array: FerretDB's", find(bson.D{{Key: "_id", Value: "d025"}, {Key: "claim.owner", Value: "o1"}}), false},
		{"by _id and a path through a string: FerretDB's", find(bson.D{{Key: "_id", Value: "d035"}, {Key: "claim.owner", Value: "o1"}}), false},
		{"by _id and a path with an index: FerretDB's", find(bson.D{{Key: "_id", Value: "d020"}, {Key: "tags.0", Value: "x"}}), false},
		{"by _id and another operator: FerretDB's", find(bson.D{{Key: "_id", Value: "d004"}, {Key: "n", Value: bson.D{{Key: "$gt", Value: int32(1)}}}}), false},
		{"by _id and a field twice: FerretDB's", find(bson.D{{Key: "_id", Value: "d004"}, {Key: "n", Value: int32(4)}, {Key: "n", Value: int32(4)}}), false},
		{"by _ids and conditions", find(append(in("d005", "a1", "d003", "d010", "d020", "d030", "a0"), notDeleted,
			bson.E{Key: "name", Value: bson.D{{Key: "$in", Value: bson.A{"n2", "late", "n0"}}}})), true},
		{"by _ids and conditions, a limit", find(append(in(all...), notDeleted, bson.E{Key: "kind", Value: "many"}), bson.E{Key: "limit", Value: int64(3)}), true},
		{"by _ids and conditions, a projection", find(append(in("d005", "d003", "d010"), notDeleted),
			bson.E{Key: "projection", Value: bson.D{{Key: "n", Value: 0}}}), true},
		{"by _ids and conditions, none match", find(append(in("d005", "d003"), bson.E{Key: "n", Value: int32(-7)})), true},
		{"by _ids and conditions, more than a batch: a cursor", find(append(in(all...), bson.E{Key: "kind", Value: "many"})), false},
		{"by _ids and conditions, fewer than a batch match", find(append(in(all...), bson.E{Key: "name", Value: "n1"}, notDeleted)), true},
		{"by _ids and conditions, more than a batch, single batch", find(append(in(all...), bson.E{Key: "kind", Value: "many"}), bson.E{Key: "singleBatch", Value: true}), true},
		{"by _ids and a field stored as an array: FerretDB's", find(append(in("d019", "d020"), bson.E{Key: "tags", Value: "x"})), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			var replies [2]bson.Raw
			a0, _ := r.srv.DirectFindStats()
			for i, on := range []bool{false, true} {
				r.srv.SetDirect(on)
				var err error
				if replies[i], err = coll.Database().RunCommand(ctx, c.cmd).Raw(); err != nil {
					t.Fatal(err)
				}
			}
			r.srv.SetDirect(false)
			if c.direct && !bytes.Equal(replies[0], replies[1]) { // else both are FerretDB's, with their own cursor ids
				t.Errorf("replies differ:\nFerretDB %s\nSQLite   %s", replies[0], replies[1])
			}
			if a1, _ := r.srv.DirectFindStats(); (a1-a0 == 1) != c.direct {
				t.Errorf("SQLite answered %d, want it to answer: %v", a1-a0, c.direct)
			}
		})
	}
}
