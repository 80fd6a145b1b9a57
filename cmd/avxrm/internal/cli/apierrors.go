package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/avxrm/rm/sdk/go/avxrm"
	"github.com/avxrm/rm/sdk/go/avxrm/api"
	"github.com/oapi-codegen/nullable"
	"github.com/spf13/pflag"
)

// The API's errors speak of its requests and fields; the functions here
// put them in the words of the command line: the flags that gave a field,
// the commands that do what the API names by method and path.

// fieldErrors rewrites each field error of a 422 as rename returns it (its
// field and message, in the detail too), so that the error speaks of what
// was typed; err as it is when it has none.
func fieldErrors(err error, rename func(api.FieldError) api.FieldError) error {
	var e *avxrm.Error
	if !errors.As(err, &e) || e.StatusCode != http.StatusUnprocessableEntity || len(e.FieldErrors()) == 0 {
		return err
	}
	out := *e
	fes := slices.Clone(e.FieldErrors())
	detail := deref(e.Problem.Detail)
	for i, fe := range fes {
		if n := rename(fe); n != fe {
			detail = strings.Replace(detail, fe.Field+": "+fe.Message, n.Field+": "+n.Message, 1)
			fes[i] = n
		}
	}
	if e.Problem.Detail != nil {
		out.Problem.Detail = &detail
	}
	out.Problem.Errors = nullable.NewNullableWithValue(fes)
	return &out
}

// flagErrors names the fields of a 422 by the flags that gave them (named
// returns the flag of a field, "" for one the flags did not give: it stays
// as the server named it), so that the error speaks of what was typed.
func flagErrors(err error, named func(field string) string) error {
	return fieldErrors(err, func(fe api.FieldError) api.FieldError {
		if flag := named(fe.Field); flag != "" {
			fe.Field = flag
		}
		return fe
	})
}

// paramFlags is a named function for flagErrors of a command whose flags
// alone give the fields or query parameters of its request: flags maps a
// field (samples, for samples[1] too) to its flag's name.
func paramFlags(flags map[string]string) func(field string) string {
	return func(field string) string {
		if f := flags[field[:strings.IndexAny(field+".", ".[")]]; f != "" {
			return "--" + f
		}
		return ""
	}
}

// withDetail is e with detail for its problem's, and no field errors (the
// detail says it all).
func withDetail(e *avxrm.Error, detail string) *avxrm.Error {
	out := *e
	out.Problem.Detail = &detail
	out.Problem.Errors = nullable.Nullable[[]api.FieldError]{}
	return &out
}

// apiError is err's *avxrm.Error with status, nil if it has none.
func apiError(err error, status int) *avxrm.Error {
	var e *avxrm.Error
	if errors.As(err, &e) && e.StatusCode == status && !e.NotAPI() {
		return e
	}
	return nil
}

var (
	// The API's remedies that name its own requests.
	postControllerStarts = regexp.MustCompile(`POST /jobs/([^/\s]+)/post-controller starts one`)
	rcChange             = regexp.MustCompile(`change it with PUT or PATCH at /api/resources/v1/app-runtime-config/([^/\s]+)/application/([^/\s)]+)`)
	rcPath               = regexp.MustCompile(`\(/api/resources/v1/app-runtime-config/([^/\s]+)/application/([^/\s)]+)\)`)
	jobNotFound          = regexp.MustCompile(`^job "([^"]*)" not found$`)
	arrayNotFound        = regexp.MustCompile(`^job array "([^"]*)" not found$`)
	jobIDForm            = regexp.MustCompile(`^job-[0-9A-Z]{26}$`)
	arrayIDForm          = regexp.MustCompile(`^arr-[0-9A-Z]{26}$`)
)

// cliWords is the detail of an API error in the words of the command line:
// the commands that do what it names by the API's method and path, and how
// to find a job or an array whose name was given for its id.
func cliWords(status int, detail string) string {
	detail = postControllerStarts.ReplaceAllString(detail, "'avxrm jobs post-controller start $1' starts one")
	detail = rcChange.ReplaceAllString(detail, "change it with: avxrm rc set $1 $2")
	detail = rcPath.ReplaceAllString(detail, "(avxrm rc get $1 $2)")
	if status != http.StatusNotFound {
		return detail
	}
	if m := jobNotFound.FindStringSubmatch(detail); m != nil && !jobIDForm.MatchString(m[1]) {
		detail += "; jobs are addressed by their id (job-…), not by name: 'avxrm jobs ls -A' lists them with their names"
	}
	if m := arrayNotFound.FindStringSubmatch(detail); m != nil && !arrayIDForm.MatchString(m[1]) {
		detail += "; job arrays are addressed by their id (arr-…), not by name: 'avxrm arrays ls' lists them with their names"
	}
	return detail
}

// notTheAPI says whether e is another web server's answer that the SDK
// does not take for one (it does below 500): a 501 Not Implemented page,
// which a plain web server answers a POST, PUT or DELETE with, and the
// API never does (its 501s are problems).
func notTheAPI(e *avxrm.Error) bool {
	return e.StatusCode == http.StatusNotImplemented && e.ContentType != "" &&
		e.ContentType != "application/json" && !strings.HasSuffix(e.ContentType, "+json")
}

// setFieldNames names the fields of a create's or set's 422 by what gave
// them: the kind's own flag (--limit), else the --set or --set-string of
// that key, with how to give a string that --set reads as another JSON
// value; a field of the -f file keeps its name.
func setFieldNames(flags *pflag.FlagSet, fieldFlags map[string]string, sets, strs []string) func(api.FieldError) api.FieldError {
	last := func(pairs []string, field string) (string, bool) {
		v, ok := "", false
		for _, kv := range pairs {
			if k, val, _ := strings.Cut(kv, "="); k == field {
				v, ok = val, true
			}
		}
		return v, ok
	}
	return func(fe api.FieldError) api.FieldError {
		if flag := fieldFlags[fe.Field]; flag != "" && flags.Changed(flag) {
			fe.Field = "--" + flag
			return fe
		}
		if v, ok := last(strs, fe.Field); ok {
			fe.Field = "--set-string " + fe.Field + "=" + v
			return fe
		}
		if v, ok := last(sets, fe.Field); ok {
			field := fe.Field
			fe.Field = "--set " + field + "=" + v
			var parsed any
			if fe.Message == "expected string" && json.Unmarshal([]byte(v), &parsed) == nil {
				fe.Message += fmt.Sprintf(" (--set reads %s as JSON, %s): give it with --set-string %s=%s", v, jsonKind(parsed), field, v)
			}
		}
		return fe
	}
}

// jsonKind says what kind of JSON value v is: "a number", "a list"...
func jsonKind(v any) string {
	switch v.(type) {
	case float64:
		return "a number"
	case bool:
		return "true or false"
	case nil:
		return "null"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return "a string"
}

var numberBound = regexp.MustCompile(`^expected number (<=|>=) (\d+)$`)

// secondsBound says a bound of the API's on a number of seconds ("expected
// number <= 31536000") as a duration, the flag's unit ("at most 8760h").
func secondsBound(msg string) string {
	m := numberBound.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	n, err := strconv.ParseInt(m[2], 10, 64)
	if err != nil {
		return msg
	}
	word := map[string]string{"<=": "at most", ">=": "at least"}[m[1]]
	return word + " " + durationText(time.Duration(n)*time.Second)
}

// durationText is d as a flag takes it, without zero minutes and seconds:
// 8760h, 1h30m, 90s.
func durationText(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
