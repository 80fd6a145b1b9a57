package events

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.mongodb.org/mongo-driver/v2/bson"
)

func TestLabelsBSONRoundTrip(t *testing.T) {
	type doc struct {
		Labels Labels `bson:"labels,omitempty"`
	}
	in := doc{Labels: Labels{"example.com/team": "adas", "a%2Eb": "pct", "$x.y": "dollar", "plain": "p", "%24": "lit"}}
	raw, err := bson.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	stored := bson.Raw(raw).Lookup("labels").Document()
	elems, _ := stored.Elements()
	for _, e := range elems {
		if k := e.Key(); k == "" || k[0] == '$' || containsDot(k) {
			t.Errorf("stored key %q", k)
		}
	}
	var out doc
	if err := bson.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, out); diff != "" {
		t.Errorf("round trip (-in +out):\n%s", diff)
	}
	if f := LabelField("example.com/team"); f != "labels.example%2Ecom/team" {
		t.Errorf("LabelField = %q", f)
	}
	raw, _ = bson.Marshal(doc{})
	if _, err := bson.Raw(raw).LookupErr("labels"); err == nil {
		t.Error("empty labels are stored")
	}
}

func containsDot(s string) bool {
	for _, r := range s {
		if r == '.' {
			return true
		}
	}
	return false
}
