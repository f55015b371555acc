package main

import (
	"bufio"
	"debug/elf"
	"errors"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// dockerStage is one FROM ... AS name section of the Dockerfile.
type dockerStage struct {
	name, from string
	lines      []string
}

func parseDockerfile(t *testing.T, path string) (args map[string]string, stages []*dockerStage) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	args = map[string]string{}
	var cur *dockerStage
	var logical strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			logical.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		logical.WriteString(line)
		line = logical.String()
		logical.Reset()
		fields := strings.Fields(line)
		switch strings.ToUpper(fields[0]) {
		case "FROM":
			cur = &dockerStage{from: fields[1]}
			if len(fields) == 4 && strings.EqualFold(fields[2], "AS") {
				cur.name = fields[3]
			}
			stages = append(stages, cur)
		case "ARG":
			if cur == nil {
				name, value, _ := strings.Cut(fields[1], "=")
				args[name] = value
				continue
			}
			fallthrough
		default:
			if cur == nil {
				t.Fatalf("%s: %q before the first FROM", path, line)
			}
			cur.lines = append(cur.lines, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return args, stages
}

var copyBinary = regexp.MustCompile(`^COPY (?:--chmod=0555 )?bin/linux/\$\{TARGETARCH\}/([a-z0-9-]+) /usr/local/bin/([a-z0-9-]+)$`)

// TestDockerfile checks what a build would, without a container engine: every image stage copies
// the binary of a main package under cmd/ that `make docker-binaries` builds, runs it as its
// entrypoint, and starts from the distroless non-root base; BINARY selects one of the stages.
func TestDockerfile(t *testing.T) {
	args, stages := parseDockerfile(t, filepath.Join(root, "Dockerfile"))
	if len(stages) < 3 {
		t.Fatalf("Dockerfile has %d stages", len(stages))
	}
	byName := map[string]*dockerStage{}
	for _, s := range stages {
		if s.name != "" {
			byName[s.name] = s
		}
	}

	base := byName["base"]
	if base == nil || !strings.HasPrefix(base.from, "gcr.io/distroless/static") || !strings.HasSuffix(base.from, ":nonroot") {
		t.Fatalf("the base stage must be the static distroless image's nonroot tag, got %+v", base)
	}
	if !contains(base.lines, "USER 65532:65532") {
		t.Errorf("the base stage must run as the numeric non-root user 65532, so that runAsNonRoot can be verified")
	}

	final := stages[len(stages)-1]
	if final.from != "${BINARY}" || final.name != "" {
		t.Errorf("the last stage must be `FROM ${BINARY}`, got FROM %s AS %q", final.from, final.name)
	}
	if byName[args["BINARY"]] == nil {
		t.Errorf("ARG BINARY defaults to %q, which is no stage", args["BINARY"])
	}

	var images []string
	for _, s := range stages {
		if s.name == "" || s.name == "base" {
			continue
		}
		images = append(images, s.name)
		t.Run(s.name, func(t *testing.T) {
			if s.from != "base" {
				t.Errorf("stage %s starts FROM %s, not base", s.name, s.from)
			}
			var copied string
			for _, l := range s.lines {
				if m := copyBinary.FindStringSubmatch(l); m != nil {
					if m[1] != s.name || m[2] != s.name {
						t.Errorf("stage %s copies %s to /usr/local/bin/%s", s.name, m[1], m[2])
					}
					copied = m[1]
				} else if strings.HasPrefix(l, "COPY ") {
					t.Errorf("stage %s copies something other than its binary: %s", s.name, l)
				}
			}
			if copied == "" {
				t.Fatalf("stage %s copies no binary from bin/linux/${TARGETARCH}/", s.name)
			}
			if want := `ENTRYPOINT ["/usr/local/bin/` + s.name + `"]`; !contains(s.lines, want) {
				t.Errorf("stage %s: want %s", s.name, want)
			}
			if !contains(s.lines, "ARG TARGETARCH=amd64") {
				t.Errorf("stage %s must declare ARG TARGETARCH", s.name)
			}
			assertMainPackage(t, filepath.Join(root, "cmd", s.name))
			assertStaticIfBuilt(t, filepath.Join(root, "bin", "linux", runtime.GOARCH, s.name))
		})
	}

	// The Makefile builds and tags exactly these images.
	made := makefileList(t, "IMAGE_BINARIES")
	sort.Strings(images)
	sort.Strings(made)
	if diff := cmp.Diff(images, made); diff != "" {
		t.Errorf("Dockerfile stages and the Makefile's IMAGE_BINARIES differ (-Dockerfile +Makefile):\n%s", diff)
	}
}

// assertMainPackage fails unless dir holds a Go main package, the source of a binary.
func assertMainPackage(t *testing.T, dir string) {
	t.Helper()
	pkgs, err := parser.ParseDir(token.NewFileSet(), dir, func(fi os.FileInfo) bool {
		return !strings.HasSuffix(fi.Name(), "_test.go")
	}, parser.PackageClauseOnly)
	if err != nil {
		t.Fatalf("%s: %v", dir, err)
	}
	if _, ok := pkgs["main"]; !ok || len(pkgs) != 1 {
		t.Errorf("%s is not a main package", dir)
	}
}

// assertStaticIfBuilt checks a binary `make docker-binaries` left behind: a distroless static
// image has no dynamic loader, so the binary must need none.
func assertStaticIfBuilt(t *testing.T, path string) {
	t.Helper()
	f, err := elf.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		t.Logf("%s not built; run `make docker-binaries` to check it is static", path)
		return
	}
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s is dynamically linked; the images need CGO_ENABLED=0 binaries", path)
		}
	}
}

// makefileList reads a `NAME ?= a b c` variable of the Makefile.
func makefileList(t *testing.T, name string) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `\s*\??=\s*(.*)$`)
	m := re.FindSubmatch(raw)
	if m == nil {
		t.Fatalf("the Makefile does not set %s", name)
	}
	return strings.Fields(string(m[1]))
}
