package httpapi

import (
	"slices"
	"strings"
	"testing"
)

// The jobs of an array get ids that follow their indexes and are the same
// for the same array id; the next array of the same millisecond (events.NewID
// increments the random part) gets others.
func TestArrayJobIDs(t *testing.T) {
	arr := "arr-01M8NQ5498R40BS49Q0GH8Z7ZX"
	var ids []string
	for i := range 1100 {
		id, err := arrayJobID(arr, i)
		if err != nil {
			t.Fatal(err)
		}
		again, _ := arrayJobID(arr, i)
		if id != again || len(id) != len("job-")+26 || strings.Trim(id[4:], crockford) != "" || id[4:14] != arr[4:14] {
			t.Fatalf("index %d: %s (again %s)", i, id, again)
		}
		ids = append(ids, id)
	}
	if !slices.IsSorted(ids) || len(slices.Compact(slices.Clone(ids))) != len(ids) {
		t.Errorf("ids not in index order or not distinct: %v", ids)
	}
	if !strings.HasSuffix(ids[0], "0000") || !strings.HasSuffix(ids[1099], "012B") { // 1099 = 1·32² + 2·32 + 11
		t.Errorf("ids %s, %s", ids[0], ids[1099])
	}
	next, _ := arrayJobID("arr-01M8NQ5498R40BS49Q0GH8Z7ZY", 0)
	if slices.Contains(ids, next) {
		t.Errorf("the next array's first job %s is one of the first's", next)
	}
	if _, err := arrayJobID("q-01M8NQ5498R40BS49Q0GH8Z7ZX", 0); err == nil {
		t.Error("a queue id made an array job id")
	}
}
