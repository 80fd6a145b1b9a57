package httpapi

import "testing"

// BenchmarkScanBody is the cost scanBody adds to a submission: the body of
// bench-compare's job (an application by id, a few environment variables).
func BenchmarkScanBody(b *testing.B) {
	body := []byte(`{"queue_id":"bench","worker_instances":8,"application":{"id":"app-01M92FBHRKGC18R9R6C4E68TT1"},` +
		`"environment_variables":{"MODE":"start","HOLD":"1","ROUND":"12","STAMPS":"/tmp/bench/stamps"},"labels":{"team":"adas"}}`)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if f := scanBody(body); f != nil {
			b.Fatal(f)
		}
	}
}
