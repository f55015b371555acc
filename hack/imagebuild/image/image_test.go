package image

import (
	"archive/tar"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/millrace-dev/millrace/hack/imagebuild/dockerfile"
)

// TestImagesFollowTheDockerfile builds every stage of the project's Dockerfile the way `make
// images` does and checks that the image has the layout the Dockerfile gives a container engine:
// entrypoint, user, working folder, the binary's path and mode, labels, and a nonroot user in
// /etc/passwd (the kubelet's runAsNonRoot check reads the numeric USER).
func TestImagesFollowTheDockerfile(t *testing.T) {
	src, err := os.ReadFile("../../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df, err := dockerfile.Parse(string(src))
	if err != nil {
		t.Fatal(err)
	}
	stages := df.Stages()
	if len(stages) < 2 {
		t.Fatalf("stages %v: want the base stage and one per binary", stages)
	}
	dir := t.TempDir()
	for _, stage := range stages {
		if stage == "base" {
			continue
		}
		t.Run(stage, func(t *testing.T) {
			spec, err := df.Image(stage, map[string]string{"TARGETARCH": "amd64"})
			if err != nil {
				t.Fatal(err)
			}
			// What the Dockerfile says, read independently of Spec: the stage's COPY line and ENTRYPOINT.
			wantPath := "/usr/local/bin/" + stage
			if !strings.Contains(string(src), "bin/linux/${TARGETARCH}/"+stage+" "+wantPath) {
				t.Fatalf("the Dockerfile does not copy %s to %s", stage, wantPath)
			}
			bin := filepath.Join(dir, stage)
			payload := "#!binary " + stage
			if err := os.WriteFile(bin, []byte(payload), 0o755); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, stage+".tar")
			ref := "example.test/millrace/" + stage + ":v0"
			if err := Write(spec, bin, "amd64", ref, out); err != nil {
				t.Fatal(err)
			}
			tag, _ := name.NewTag(ref)
			img, err := tarball.ImageFromPath(out, &tag)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Config.Entrypoint; len(got) != 1 || got[0] != wantPath {
				t.Errorf("entrypoint %v, want [%s]", got, wantPath)
			}
			if cfg.Config.User != "65532:65532" {
				t.Errorf("user %q, want 65532:65532 (the Dockerfile's USER)", cfg.Config.User)
			}
			if cfg.Config.WorkingDir != "/" {
				t.Errorf("working dir %q, want /", cfg.Config.WorkingDir)
			}
			if cfg.OS != "linux" || cfg.Architecture != "amd64" {
				t.Errorf("platform %s/%s", cfg.OS, cfg.Architecture)
			}
			if cfg.Config.Labels["org.opencontainers.image.title"] == "" || cfg.Config.Labels["org.opencontainers.image.source"] == "" {
				t.Errorf("labels %v: want the stage's title and the base stage's source", cfg.Config.Labels)
			}
			files := flatten(t, img)
			if f, ok := files[strings.TrimPrefix(wantPath, "/")]; !ok {
				t.Errorf("%s missing from the image", wantPath)
			} else {
				if f.mode != 0o555 || f.uid != 0 || f.body != payload {
					t.Errorf("%s: mode %o uid %d body %q; want 0555, root, the binary", wantPath, f.mode, f.uid, f.body)
				}
			}
			if !strings.Contains(files["etc/passwd"].body, "nonroot:x:65532:65532:") {
				t.Errorf("/etc/passwd lacks the nonroot user: %q", files["etc/passwd"].body)
			}
			if f := files["tmp"]; f.mode != 0o1777 {
				t.Errorf("/tmp mode %o, want 1777", f.mode)
			}
		})
	}
}

func TestReproducible(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "b")
	if err := os.WriteFile(bin, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	spec := &dockerfile.Spec{Stage: "b", User: "65532:65532", WorkDir: "/", Entrypoint: []string{"/b"},
		Files: []dockerfile.File{{Src: "b", Dest: "/b", Mode: 0o555}}}
	a, err := Build(spec, bin, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	b, err := Build(spec, bin, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	da, _ := a.Digest()
	db, _ := b.Digest()
	if da != db {
		t.Errorf("two builds of the same input: %s and %s", da, db)
	}
}

// TestTree builds an image of a folder (the Python function's root filesystem) and checks that
// files keep their modes and contents, symlinks stay symlinks, everything is root-owned, the
// configuration is the one asked for, and the same folder gives the same digest.
func TestTree(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "usr/bin"), 0o755))
	must(os.MkdirAll(filepath.Join(dir, "lib64"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "usr/bin/python3.11"), []byte("interp"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "usr/bin/data"), []byte("ro"), 0o600))
	must(os.Symlink("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", filepath.Join(dir, "lib64/ld-linux-x86-64.so.2")))
	spec := TreeSpec{Entrypoint: []string{"/usr/bin/python3.11", "-m", "x"}, User: "65532:65532", Env: []string{"PYTHONDONTWRITEBYTECODE=1"}}
	a, err := BuildTree(spec, dir, "amd64")
	must(err)
	b, err := BuildTree(spec, dir, "amd64")
	must(err)
	da, _ := a.Digest()
	db, _ := b.Digest()
	if da != db {
		t.Errorf("two builds of the same folder: %s and %s", da, db)
	}
	cfg, err := a.ConfigFile()
	must(err)
	if strings.Join(cfg.Config.Entrypoint, " ") != "/usr/bin/python3.11 -m x" || cfg.Config.User != "65532:65532" || cfg.Config.WorkingDir != "/" {
		t.Errorf("config %+v", cfg.Config)
	}
	if env := strings.Join(cfg.Config.Env, " "); !strings.Contains(env, "PYTHONDONTWRITEBYTECODE=1") || !strings.Contains(env, "PATH=") {
		t.Errorf("env %q", env)
	}
	files := flatten(t, a)
	if f := files["usr/bin/python3.11"]; f.mode != 0o755 || f.uid != 0 || f.body != "interp" {
		t.Errorf("usr/bin/python3.11: %+v", f)
	}
	if f := files["usr/bin/data"]; f.mode != 0o600 || f.body != "ro" {
		t.Errorf("usr/bin/data: %+v", f)
	}
	if f := files["lib64/ld-linux-x86-64.so.2"]; f.link != "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" {
		t.Errorf("lib64/ld-linux-x86-64.so.2: %+v, want a symlink", f)
	}
	if !strings.Contains(files["etc/passwd"].body, "nonroot:x:65532:65532:") {
		t.Errorf("the base layer is missing: /etc/passwd %q", files["etc/passwd"].body)
	}
}

type file struct {
	mode int64
	uid  int
	body string
	link string
}

func flatten(t *testing.T, img v1.Image) map[string]file {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	out := map[string]file{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		out[strings.TrimSuffix(h.Name, "/")] = file{mode: h.Mode & 0o7777, uid: h.Uid, body: string(b), link: h.Linkname}
	}
}
