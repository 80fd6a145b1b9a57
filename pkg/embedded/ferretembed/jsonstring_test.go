package ferretembed

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestAppendJSONStringMatchesEncodingJSON: the proxy writes a string into
// FerretDB's JSON as encoding/json does (FerretDB's own writes do), also
// when it escapes line feeds itself, and leaves what it appended to before
// alone when it hands the string over.
func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	cases := []string{
		"", "plain", "leases\njob-1 q-a=1 q-ctl=1\njob-2 q-a=3\n", "\n", "\n\n", "a\nb",
		"tab\there", "cr\r\n", `quote"d`, `back\slash`, "<tag>&", "\u2028x\u2029", "ü é 日本",
		"\x00", "\x1f", "bad \xff utf8", "line\nthen \"quote\"", "line\nthen \x7f",
	}
	alphabet := []string{"a", "Z", "0", " ", "=", "\n", "\t", "\r", "\"", "\\", "<", ">", "&",
		"\u2028", "\u2029", "\u2027", "\u202a", "é", "日", "\x00", "\x1f", "\x7f", "\xff", "\xe2\x80"}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		var sb strings.Builder
		for range rng.IntN(24) {
			sb.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		cases = append(cases, sb.String())
	}
	for _, s := range cases {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendJSONString([]byte("x,"), s); string(got) != "x,"+string(want) {
			t.Fatalf("appendJSONString(%q) = %s, want x,%s", s, got, want)
		}
	}
}
