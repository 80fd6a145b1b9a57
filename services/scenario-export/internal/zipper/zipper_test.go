package zipper

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// entry builds a test entry whose content is its zip path.
func entry(kind, group, path string) Entry {
	e := Entry{Kind: kind, Path: path}
	if kind == KindScenario {
		e.SampleID = group
	} else {
		e.Declaration = group
	}
	content := []byte(e.ZipPath())
	sum := sha256.Sum256(content)
	e.Size, e.SHA256, e.Ref = int64(len(content)), hex.EncodeToString(sum[:]), string(content)
	return e
}

var job = []Entry{
	entry(KindScenario, "s-001", "scenario.xosc"),
	entry(KindScenario, "s-001", "params/p.json"),
	entry(KindScenario, "s-007", "scenario.xosc"),
	entry(KindScenario, "s-009", "scenario.xosc"),
	entry(KindAsset, "", "common/vehicles.xml"),
	entry(KindAsset, "", "catalog.xml"),
	entry(KindAsset, "road-network", "town.xodr"),
	entry(KindAsset, "road-network", "town/lanes.bin"),
	entry(KindAsset, "weather", "rain.json"),
}

func TestSelect(t *testing.T) {
	tests := map[string]struct {
		req  Request
		want []string
	}{
		"nothing asked: no scenario file, all common asset data": {
			req:  Request{},
			want: []string{"assets/catalog.xml", "assets/common/vehicles.xml"},
		},
		"samples given: every file of those samples, plus common assets": {
			req:  Request{Samples: []string{"s-007", "s-001"}},
			want: []string{"assets/catalog.xml", "assets/common/vehicles.xml", "scenarios/s-001/params/p.json", "scenarios/s-001/scenario.xosc", "scenarios/s-007/scenario.xosc"},
		},
		"samples empty list: no scenario file": {
			req:  Request{Samples: []string{}, Include: []string{KindScenario}},
			want: nil,
		},
		"include scenario only": {
			req:  Request{Samples: []string{"s-009"}, Include: []string{KindScenario}},
			want: []string{"scenarios/s-009/scenario.xosc"},
		},
		"include asset only ignores samples": {
			req:  Request{Samples: []string{"s-009"}, Include: []string{KindAsset}},
			want: []string{"assets/catalog.xml", "assets/common/vehicles.xml"},
		},
		"include both explicitly": {
			req:  Request{Samples: []string{"s-009"}, Include: []string{KindScenario, KindAsset}},
			want: []string{"assets/catalog.xml", "assets/common/vehicles.xml", "scenarios/s-009/scenario.xosc"},
		},
		"declaration filter: only those declarations, no common data": {
			req:  Request{FilterByAssetDeclaration: []string{"road-network"}},
			want: []string{"assets/road-network/town.xodr", "assets/road-network/town/lanes.bin"},
		},
		"two declarations": {
			req:  Request{FilterByAssetDeclaration: []string{"weather", "road-network"}},
			want: []string{"assets/road-network/town.xodr", "assets/road-network/town/lanes.bin", "assets/weather/rain.json"},
		},
		"declaration filter with scenario only: filter has nothing to pick": {
			req:  Request{Samples: []string{"s-001"}, Include: []string{KindScenario}, FilterByAssetDeclaration: []string{"weather"}},
			want: []string{"scenarios/s-001/params/p.json", "scenarios/s-001/scenario.xosc"},
		},
		"duplicate samples count once": {
			req:  Request{Samples: []string{"s-007", "s-007"}, Include: []string{KindScenario}},
			want: []string{"scenarios/s-007/scenario.xosc"},
		},
		"the API.md example": {
			req:  Request{Samples: []string{"s-001", "s-007"}, Include: []string{KindScenario, KindAsset}, FilterByAssetDeclaration: []string{"road-network"}},
			want: []string{"assets/road-network/town.xodr", "assets/road-network/town/lanes.bin", "scenarios/s-001/params/p.json", "scenarios/s-001/scenario.xosc", "scenarios/s-007/scenario.xosc"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var got []string
			for _, e := range Select(tc.req, job) {
				got = append(got, e.ZipPath())
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Select() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// openRef serves an entry's Ref as its content.
func openRef(_ context.Context, e Entry) (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader([]byte(e.Ref))), nil
}

func TestWrite(t *testing.T) {
	for name, opt := range map[string]Options{"deflate": {}, "store": {Store: true}} {
		t.Run(name, func(t *testing.T) {
			entries := Select(Request{Samples: []string{"s-001"}}, job)
			var buf bytes.Buffer
			m := Manifest{ExportID: "exp-1", JobID: "job-1"}
			if err := Write(context.Background(), &buf, m, entries, openRef, opt); err != nil {
				t.Fatal(err)
			}
			zr, err := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			var names []string
			for _, f := range zr.File {
				names = append(names, f.Name)
				rc, err := f.Open()
				if err != nil {
					t.Fatal(err)
				}
				b, err := io.ReadAll(rc)
				rc.Close()
				if err != nil {
					t.Fatal(err)
				}
				got[f.Name] = string(b)
			}
			wantNames := []string{ManifestName, "assets/catalog.xml", "assets/common/vehicles.xml", "scenarios/s-001/params/p.json", "scenarios/s-001/scenario.xosc"}
			if diff := cmp.Diff(wantNames, names); diff != "" {
				t.Errorf("zip entries (-want +got):\n%s", diff)
			}
			for _, e := range entries {
				if got[e.ZipPath()] != e.Ref {
					t.Errorf("%s = %q, want %q", e.ZipPath(), got[e.ZipPath()], e.Ref)
				}
			}
			var man Manifest
			if err := json.Unmarshal([]byte(got[ManifestName]), &man); err != nil {
				t.Fatal(err)
			}
			wantMan := Manifest{ExportID: "exp-1", JobID: "job-1"}
			for _, e := range entries {
				wantMan.Files = append(wantMan.Files, ManifestEntry{Path: e.ZipPath(), Size: e.Size, SHA256: e.SHA256})
			}
			if diff := cmp.Diff(wantMan, man); diff != "" {
				t.Errorf("manifest (-want +got):\n%s", diff)
			}
			// The same input gives the same bytes.
			var again bytes.Buffer
			if err := Write(context.Background(), &again, m, entries, openRef, opt); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), again.Bytes()) {
				t.Error("two writes of the same export differ")
			}
		})
	}
}

func TestWriteVerifies(t *testing.T) {
	good := entry(KindAsset, "", "a.bin")
	tests := map[string]func(e *Entry){
		"content differs":   func(e *Entry) { e.Ref = "x" + e.Ref[1:] },
		"content shorter":   func(e *Entry) { e.Ref = e.Ref[1:] },
		"content longer":    func(e *Entry) { e.Ref += "!" },
		"recorded size off": func(e *Entry) { e.Size-- },
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			e := good
			mutate(&e)
			err := Write(context.Background(), io.Discard, Manifest{}, []Entry{e}, openRef, Options{})
			if !errors.Is(err, ErrChecksum) {
				t.Errorf("Write() = %v, want ErrChecksum", err)
			}
		})
	}
}

func TestWriteStopsAfterEntry(t *testing.T) {
	stop := errors.New("stop")
	n := 0
	err := Write(context.Background(), io.Discard, Manifest{}, job[:4], openRef, Options{AfterEntry: func(_ context.Context, written int) error {
		n = written
		if written == 2 {
			return stop
		}
		return nil
	}})
	if !errors.Is(err, stop) || n != 2 {
		t.Errorf("Write() = %v after %d entries, want stop after 2", err, n)
	}
}

func TestZipPath(t *testing.T) {
	tests := map[string]struct {
		e    Entry
		want string
	}{
		"scenario":           {Entry{Kind: KindScenario, SampleID: "s-1", Path: "a/b.xosc"}, "scenarios/s-1/a/b.xosc"},
		"common asset":       {Entry{Kind: KindAsset, Path: "a/b.xodr"}, "assets/a/b.xodr"},
		"declaration assets": {Entry{Kind: KindAsset, Declaration: "road", Path: "b.xodr"}, "assets/road/b.xodr"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := tc.e.ZipPath(); got != tc.want {
				t.Errorf("ZipPath() = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestWriteRefusesFileAndDirectory: a zip with both a/x and a/x/y cannot be
// extracted (unzip: "exists but is not directory"), so Write writes nothing
// and names both.
func TestWriteRefusesFileAndDirectory(t *testing.T) {
	tests := map[string][]Entry{
		"file then its directory": {entry(KindScenario, "s-1", "a"), entry(KindScenario, "s-1", "a/b")},
		"deeper":                  {entry(KindScenario, "s-1", "a/b"), entry(KindScenario, "s-1", "a-b"), entry(KindScenario, "s-1", "a/b/c/d.xosc")},
		"assets":                  {entry(KindAsset, "road", "town"), entry(KindAsset, "road", "town/lanes.bin")},
	}
	for name, entries := range tests {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			err := Write(context.Background(), &buf, Manifest{}, entries, openRef, Options{})
			if !errors.Is(err, ErrPathConflict) || buf.Len() != 0 {
				t.Fatalf("Write() = %v with %d bytes written, want ErrPathConflict and nothing", err, buf.Len())
			}
			first, last := entries[0].ZipPath(), entries[len(entries)-1].ZipPath()
			if !bytes.Contains([]byte(err.Error()), []byte(first)) || !bytes.Contains([]byte(err.Error()), []byte(last)) {
				t.Errorf("Write() = %v, want both %s and %s named", err, first, last)
			}
		})
	}
	// Siblings that share a prefix are no conflict.
	ok := []Entry{entry(KindScenario, "s-1", "a"), entry(KindScenario, "s-1", "a-b/c"), entry(KindScenario, "s-1", "ab/c")}
	if err := Write(context.Background(), io.Discard, Manifest{}, ok, openRef, Options{}); err != nil {
		t.Errorf("Write(siblings) = %v", err)
	}
}

func TestWindowsNames(t *testing.T) {
	sc := func(path string) Entry { return entry(KindScenario, "s-1", path) }
	as := func(path string) Entry { return entry(KindAsset, "", path) }
	got := WindowsNames([]Entry{
		sc("run.xosc"), sc("aux.xosc"), sc("Con"), sc("lpt1.txt/x"), sc("com10.xosc"), sc("console.xosc"),
		sc("nul .txt"), sc("maps./a.xodr"), sc("trail "), sc("a:b.xosc"), as("what?.bin"), sc(`"q"`), sc("lpt0"),
	}, 20)
	want := []string{
		`scenarios/s-1/aux.xosc cannot be unpacked on Windows as it is: "aux.xosc" is named as the device AUX, which Windows reserves with any extension`,
		`scenarios/s-1/Con cannot be unpacked on Windows as it is: "Con" is named as the device CON, which Windows reserves with any extension`,
		`scenarios/s-1/lpt1.txt/x cannot be unpacked on Windows as it is: "lpt1.txt" is named as the device LPT1, which Windows reserves with any extension`,
		`scenarios/s-1/nul .txt cannot be unpacked on Windows as it is: "nul .txt" is named as the device NUL, which Windows reserves with any extension`,
		`scenarios/s-1/maps./a.xodr cannot be unpacked on Windows as it is: "maps." ends in a dot or a space, which Windows drops`,
		`scenarios/s-1/trail  cannot be unpacked on Windows as it is: "trail " ends in a dot or a space, which Windows drops`,
		`scenarios/s-1/a:b.xosc cannot be unpacked on Windows as it is: "a:b.xosc" holds ":", which Windows does not allow in a name`,
		`assets/what?.bin cannot be unpacked on Windows as it is: "what?.bin" holds "?", which Windows does not allow in a name`,
		`scenarios/s-1/"q" cannot be unpacked on Windows as it is: "\"q\"" holds "\"", which Windows does not allow in a name`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("WindowsNames() mismatch (-want +got):\n%s", diff)
	}
	many := WindowsNames([]Entry{sc("aux"), sc("con"), sc("prn"), sc("nul")}, 2)
	if len(many) != 2 || !strings.HasSuffix(many[1], "; and 2 more names Windows cannot hold") {
		t.Errorf("WindowsNames of 4 with max 2 = %q, want 2, the last counting 2 more", many)
	}
}

func TestCaseClashes(t *testing.T) {
	sc := func(path string) Entry { return entry(KindScenario, "s-1", path) }
	tests := map[string]struct {
		entries []Entry
		want    []string
	}{
		"none": {entries: job},
		"same directory, different samples": {
			entries: []Entry{sc("Scenario.xosc"), entry(KindScenario, "S-1", "scenario.xosc")},
			want:    []string{"scenarios/s-1/Scenario.xosc and scenarios/S-1/scenario.xosc differ only in case: unpacked where case is ignored (macOS, Windows), one replaces the other"},
		},
		"files": {
			entries: []Entry{sc("A.xosc"), sc("a.xosc"), sc("b.xosc")},
			want:    []string{"scenarios/s-1/A.xosc and scenarios/s-1/a.xosc differ only in case: unpacked where case is ignored (macOS, Windows), one replaces the other"},
		},
		"a file and a directory": {
			entries: []Entry{sc("Maps"), sc("maps/town.xodr")},
			want:    []string{"scenarios/s-1/Maps is a file and scenarios/s-1/maps/town.xodr needs scenarios/s-1/maps as a directory, which differs only in case: unpacked where case is ignored (macOS, Windows), it cannot be written"},
		},
		"directories alone merge": {entries: []Entry{sc("Maps/a.xodr"), sc("maps/b.xodr")}},
		// é as one character (NFC, what most systems write) and as e and
		// a combining accent (NFD, what macOS's HFS+ wrote): one file on
		// macOS, two on Windows and Linux.
		"the Unicode form": {
			entries: []Entry{sc("caf\u00e9.xosc"), sc("cafe\u0301.xosc")},
			want:    []string{"scenarios/s-1/caf\u00e9.xosc and scenarios/s-1/cafe\u0301.xosc differ only in the Unicode form of a letter (one character or a letter and an accent): unpacked where that form is ignored (macOS), one replaces the other"},
		},
		"case and the Unicode form": {
			entries: []Entry{sc("Caf\u00e9/a.xodr"), sc("CAFE\u0301")},
			want:    []string{"scenarios/s-1/CAFE\u0301 is a file and scenarios/s-1/Caf\u00e9/a.xodr needs scenarios/s-1/Caf\u00e9 as a directory, which differs only in case and the Unicode form of a letter: unpacked where both are ignored (macOS), it cannot be written"},
		},
		// The Kelvin sign lower-cases to a one-byte k: a path's lower case
		// is shorter than it, and its directories are cut apart.
		"shorter in lower case": {
			entries: []Entry{sc("\u212a\u212a\u212a/x"), sc("kkk/y"), sc("Kkk")},
			want: []string{"scenarios/s-1/Kkk is a file and scenarios/s-1/\u212a\u212a\u212a/x needs scenarios/s-1/\u212a\u212a\u212a as a directory, which differs only in case: unpacked where case is ignored (macOS, Windows), it cannot be written",
				"scenarios/s-1/Kkk is a file and scenarios/s-1/kkk/y needs scenarios/s-1/kkk as a directory, which differs only in case: unpacked where case is ignored (macOS, Windows), it cannot be written"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, CaseClashes(tc.entries, 10)); diff != "" {
				t.Errorf("CaseClashes() mismatch (-want +got):\n%s", diff)
			}
		})
	}
	many := []Entry{sc("x"), sc("X"), sc("y"), sc("Y"), sc("z"), sc("Z")}
	got := CaseClashes(many, 2)
	if len(got) != 2 || !strings.HasSuffix(got[1], "; and 1 more clashes of case") {
		t.Errorf("CaseClashes(3 clashes, max 2) = %q, want 2 told and the third counted", got)
	}
}
