package events_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/avxrm/rm/pkg/events"
)

// Types lists every event type constant of types.go, once: the API refuses a
// type filter that names none of them.
func TestTypesListsEveryType(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "types.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var consts []string
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok || len(vs.Names) != 1 || len(vs.Values) != 1 || !strings.HasPrefix(vs.Names[0].Name, "Type") {
			return true
		}
		if lit, ok := vs.Values[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
			s, _ := strconv.Unquote(lit.Value)
			consts = append(consts, s)
		}
		return true
	})
	if len(consts) < 20 {
		t.Fatalf("read %d type constants from types.go; the test no longer reads them", len(consts))
	}
	if !slices.Equal(consts, events.Types) {
		t.Errorf("Types %v\nwant the constants in their order %v", events.Types, consts)
	}
}
