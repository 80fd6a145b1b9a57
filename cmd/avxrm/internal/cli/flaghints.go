package cli

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// bodyAnnotation marks a command whose body takes the fields of a kind's
// resource (create and set); its value is the kind's use, e.g. "apps".
// submitAnnotation marks submit, whose body is a job's.
const (
	bodyAnnotation   = "avxrm.body"
	submitAnnotation = "avxrm.submit"
)

// unknownFlag is the name a command line gave of a flag the command does
// not have, "" for another error; short says it was a shorthand (the
// letter of -x).
func unknownFlag(err error) (name string, short bool) {
	var ne *pflag.NotExistError
	if errors.As(err, &ne) {
		return ne.GetSpecifiedName(), ne.GetSpecifiedShortnames() != ""
	}
	return "", false
}

// unknownShorthandHint names the flags of cmd that -c likely meant: the one
// whose shorthand is c in the other case (-a for -A), else the flags whose
// names begin with c, if there are at most three. "" when there is none.
func unknownShorthandHint(cmd *cobra.Command, c string) string {
	var same, begin []string
	visit := func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		name := "--" + f.Name
		if f.Shorthand != "" && strings.EqualFold(f.Shorthand, c) {
			same = append(same, "-"+f.Shorthand+" ("+name+")")
		} else if strings.HasPrefix(f.Name, strings.ToLower(c)) && !slices.Contains(begin, name) {
			begin = append(begin, name)
		}
	}
	cmd.LocalFlags().VisitAll(visit)
	cmd.InheritedFlags().VisitAll(visit)
	near := same
	if len(near) == 0 && len(begin) <= 3 {
		near = begin
	}
	if len(near) == 0 {
		return ""
	}
	slices.Sort(near)
	return "did you mean " + strings.Join(near, " or ") + "?"
}

// unknownFlagHint says what to give instead of --name: on create and set,
// a flag named after a field of the resource (--version) is given with
// --set-string or --set, or with the command's own flag for it; on submit,
// a flag named after the job's field (--worker-instances) is that field's
// flag (--workers); elsewhere, the command's flag the name is likely a slip
// of. "" when there is nothing to say.
func unknownFlagHint(cmd *cobra.Command, name string) string {
	if use, ok := cmd.Annotations[bodyAnnotation]; ok {
		if i := slices.IndexFunc(kinds, func(k kind) bool { return k.use == use }); i >= 0 {
			if hint := kinds[i].fieldHint(cmd, name); hint != "" {
				return hint
			}
		}
	}
	if _, ok := cmd.Annotations[submitAnnotation]; ok {
		if hint := submitFieldHint(name); hint != "" {
			return hint
		}
	}
	if near := nearFlags(cmd, name); len(near) > 0 {
		return "did you mean --" + strings.Join(near, " or --") + "?"
	}
	return ""
}

// fieldHint says how create or set gives the field of k's body that the
// flag name stands for (dashes for underscores), "" if the body has none.
func (k kind) fieldHint(cmd *cobra.Command, name string) string {
	field, t := jsonField(k.body, name)
	if field == "" {
		return ""
	}
	noun := map[string]string{"apps": "application", "runtime-configs": "runtime config"}[k.use]
	if noun == "" {
		noun = strings.TrimSuffix(k.use, "s")
	}
	what := "the " + noun + "'s " + field
	if flag := k.fieldFlags[field]; flag != "" {
		return fmt.Sprintf("%s is set with --%s", what, flag)
	}
	if field == "name" && strings.HasPrefix(cmd.Use, "create") && k.keys == 1 {
		return fmt.Sprintf("the name is the argument: avxrm %s create <name>", k.use)
	}
	return what + " is set with " + setExample(field, t)
}

// setExample is how --set or --set-string gives field, of type t.
func setExample(field string, t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "--set-string " + field + "=…"
	case reflect.Slice:
		return "--set '" + field + `=["…", "…"]' (a JSON list)`
	case reflect.Map, reflect.Struct:
		return "--set " + field + ".<key>=… (one --set per key)"
	}
	return "--set " + field + "=…"
}

// jsonField is the field of the struct type body whose JSON name is the
// flag name with underscores for dashes, and its type without pointers
// and nullable wrappers; "" if there is none.
func jsonField(body reflect.Type, name string) (string, reflect.Type) {
	if body == nil {
		return "", nil
	}
	want := strings.ReplaceAll(name, "-", "_")
	for i := range body.NumField() {
		f := body.Field(i)
		if tag, _, _ := strings.Cut(f.Tag.Get("json"), ","); tag == want {
			return tag, valueType(f.Type)
		}
	}
	return "", nil
}

// valueType unwraps pointers and oapi-codegen's nullable.Nullable[T]
// (a map[bool]T) down to the type a field's value has in JSON.
func valueType(t reflect.Type) reflect.Type {
	for {
		switch {
		case t.Kind() == reflect.Pointer:
			t = t.Elem()
		case t.Kind() == reflect.Map && t.Key().Kind() == reflect.Bool:
			t = t.Elem()
		default:
			return t
		}
	}
}

// submitFieldHint says which of submit's flags gives the job's field the
// flag name stands for (--worker-instances: --workers), "" if none does.
func submitFieldHint(name string) string {
	field := strings.ReplaceAll(name, "-", "_")
	switch field {
	case "args":
		return "the job's args follow --: avxrm submit … -- --seed 42"
	case "depends_on":
		return "the job's depends_on is given with --after-ok <job> or --after-any <job>"
	}
	if flag := submitFlags[field]; flag != "" { // never the name itself: that flag exists
		return fmt.Sprintf("the job's %s is given with --%s", field, flag)
	}
	return ""
}

// nearFlags are the flags of cmd whose names are likely what name was
// meant to be: one edit away, or name cut short of one.
func nearFlags(cmd *cobra.Command, name string) []string {
	var near []string
	visit := func(f *pflag.Flag) {
		if f.Hidden || slices.Contains(near, f.Name) {
			return
		}
		if editDistance(name, f.Name) <= 1 || len(name) >= 3 && strings.HasPrefix(f.Name, name) {
			near = append(near, f.Name)
		}
	}
	cmd.LocalFlags().VisitAll(visit)
	cmd.InheritedFlags().VisitAll(visit)
	slices.Sort(near)
	return near
}

// editDistance is the Levenshtein distance of a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
