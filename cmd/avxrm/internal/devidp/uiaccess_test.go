package devidp_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/avxrm/rm/cmd/avxrm/internal/devidp"
)

// TestWebViewShowsOnlyReadableJobs: the web view's jobs table, a queue's
// lists and the events feed show a caller the jobs the API lets it read
// (those of the queues whose access.read names it, and its own): the pages
// read from the store while the view's job index loads (those that come
// before it is loaded; the first one at least) and from the index after,
// on the embedded store read by index and not. TestJobPagesKeepToWhatTheCallerMayRead
// (services/api/internal/ui) pins each of the view's reads.
func TestWebViewShowsOnlyReadableJobs(t *testing.T) {
	for _, indexed := range []bool{false, true} {
		t.Run(map[bool]string{false: "store", true: "indexed"}[indexed], func(t *testing.T) { testWebViewAccess(t, indexed) })
	}
}

func testWebViewAccess(t *testing.T, indexed bool) {
	e := startStore(t, devidp.Config{}, indexed)
	admin, user, viewer := bearer(e.login("admin")), bearer(e.login("user")), bearer(e.login("viewer"))
	jobs := e.openAndRestricted(admin)
	submit := func(token, queue, name string) string { t.Helper(); return jobs(token, queue, name)["id"].(string) }
	userOpen, adminOpen := submit(user, "open", "user-open"), submit(admin, "open", "admin-open")
	userRestricted, adminRestricted := submit(user, "restricted", "user-restricted"), submit(admin, "restricted", "admin-restricted")
	every := []string{userOpen, adminOpen, userRestricted, adminRestricted}
	sees := map[string][]string{
		admin:  every,
		user:   {userOpen, adminOpen, userRestricted}, // its own on the restricted queue
		viewer: {userOpen, adminOpen},
	}
	names := map[string]string{admin: "admin", user: "user", viewer: "viewer"}

	page := func(token, path string) (body, source string) {
		t.Helper()
		r := e.must(http.StatusOK, token, http.MethodGet, path, nil)
		return string(r.Body), r.Header.Get("X-RM-Jobs-Source")
	}
	check := func(what, token, body string, want []string) {
		t.Helper()
		for _, id := range every {
			if got, ok := strings.Contains(body, id), contains(want, id); got != ok {
				t.Errorf("%s shows %s %s: %v, want %v", names[token], what, id, got, ok)
			}
		}
	}
	for _, source := range []string{"store", "index"} {
		for _, token := range []string{admin, user, viewer} {
			for _, path := range []string{"/ui/jobs", "/ui/jobs?status=submitted", "/ui/jobs?q=restricted", "/ui/jobs?queue=restricted"} {
				body, got := page(token, path)
				if source == "store" && got != "store" {
					continue // the index was loaded meanwhile: checked below
				}
				want := sees[token]
				if strings.Contains(path, "restricted") {
					want = intersect(want, []string{userRestricted, adminRestricted})
				}
				check(path+" (from the "+got+")", token, body, want)
			}
			body, _ := page(token, "/ui/queues/restricted")
			check("/ui/queues/restricted", token, body, intersect(sees[token], []string{userRestricted, adminRestricted}))
			body, _ = page(token, "/ui/events")
			check("/ui/events", token, body, sees[token])
		}
		if source == "store" { // the pages above started the index loading
			for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				if _, got := page(admin, "/ui/jobs"); got == "index" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the job index was not loaded within 20 s")
				}
			}
		}
	}
	// The filters cannot widen it.
	body, _ := page(viewer, "/ui/jobs?owner=admin&label=x%3Dy")
	check("/ui/jobs?owner=admin&label=x=y", viewer, body, nil)
	body, _ = page(viewer, "/ui/jobs?owner=admin")
	check("/ui/jobs?owner=admin", viewer, body, []string{adminOpen})
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func intersect(a, b []string) []string {
	var out []string
	for _, x := range a {
		if contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}
