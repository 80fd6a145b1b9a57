package httpapi

import (
	"slices"
	"strings"
	"testing"
)

// The jobs of an array get ids that follow their indexes, carrying across
// the random digits, and are the same for the same array id.
func TestArrayJobIDs(t *testing.T) {
	arr := "arr-01M8NQ5498R40BS49Q0GH8Z7ZX"
	var ids []string
	for i := range 70 {
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
	if ids[0] != "job-01M8NQ5498R40BS49Q0GH8Z7ZX" || ids[3] != "job-01M8NQ5498R40BS49Q0GH8Z800" {
		t.Errorf("ids %s, %s", ids[0], ids[3])
	}
	if _, err := arrayJobID("q-01M8NQ5498R40BS49Q0GH8Z7ZX", 0); err == nil {
		t.Error("a queue id made an array job id")
	}
}
