package ui_test

import (
	"net/http"
	"strings"
	"testing"
)

// Text people write (a queue's description, label values, owners) is shown
// as text: markup in it stays inert, and a bidi control in it (U+202E turns
// what follows right to left) is isolated in a <bdi>, so it cannot reorder
// what the page writes after it ("· all jobs of this queue" read backwards).
func TestPeoplesTextIsInertAndIsolated(t *testing.T) {
	e := startEnv(t)
	const rlo = "\u202e"
	e.must(http.MethodPost, "/api/resources/v1/queues", map[string]any{"name": "Txt",
		"description": `<script>alert(1)</script>` + rlo + "reversed"}, http.StatusCreated)
	id := e.submit("txt", "Txt", 1, map[string]string{"k": `"><img src=x onerror=alert(2)>` + rlo})

	for _, path := range []string{"/ui/queues/Txt", "/ui/jobs/" + id, "/ui/jobs?queue=Txt"} {
		p := e.page(path)
		for _, raw := range []string{"<script>alert", "<img src=x"} {
			if strings.Contains(p, raw) {
				t.Errorf("%s holds the markup %q unescaped", path, raw)
			}
		}
	}
	wantIn(t, "queue page", e.page("/ui/queues/Txt"), "<bdi>&lt;script&gt;alert(1)&lt;/script&gt;"+rlo+"reversed</bdi>")
	for _, path := range []string{"/ui/jobs/" + id, "/ui/jobs?queue=Txt"} {
		wantIn(t, path, e.page(path), `<bdi class="label">k=&#34;&gt;&lt;img src=x onerror=alert(2)&gt;`+rlo+"</bdi>")
	}
}
