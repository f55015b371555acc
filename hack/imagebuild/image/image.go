// Package image builds one OCI image from a dockerfile.Spec and a static binary, with
// go-containerregistry, and writes it as a docker-archive tarball. The output is reproducible:
// fixed timestamps and ordering, so the same binary gives the same image digest.
package image

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/millrace-dev/millrace/hack/imagebuild/dockerfile"
)

// NonrootUID is the user of distroless' nonroot images, and of every Millrace image.
const NonrootUID = 65532

// caBundle is where Debian keeps the CA certificates the base layer carries, like distroless.
const caBundle = "/etc/ssl/certs/ca-certificates.crt"

var epoch = time.Unix(0, 0).UTC()

// Build returns the image of spec with the binary at binPath.
func Build(spec *dockerfile.Spec, binPath, arch string) (v1.Image, error) {
	if len(spec.Files) != 1 {
		return nil, fmt.Errorf("stage %q copies %d files; images hold one binary", spec.Stage, len(spec.Files))
	}
	bin, err := os.ReadFile(binPath)
	if err != nil {
		return nil, err
	}
	base, err := layer(baseFiles())
	if err != nil {
		return nil, err
	}
	f := spec.Files[0]
	mode := f.Mode
	if mode == 0 {
		mode = 0o755
	}
	app, err := layer(withParents([]entry{{name: f.Dest, mode: mode, data: bin}}))
	if err != nil {
		return nil, err
	}
	return assemble(arch, v1.Config{
		User:       spec.User,
		WorkingDir: spec.WorkDir,
		Entrypoint: spec.Entrypoint,
		Labels:     spec.Labels,
		Env:        defaultEnv(),
	}, base, app)
}

// defaultEnv is the environment of every image: the usual PATH and distroless' CA bundle.
func defaultEnv() []string {
	return []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "SSL_CERT_FILE=" + caBundle}
}

// assemble stacks layers on an empty image with the configuration c, for arch, at the fixed epoch.
func assemble(arch string, c v1.Config, layers ...v1.Layer) (v1.Image, error) {
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.Architecture, cfg.OS = arch, "linux"
	cfg.Created = v1.Time{Time: epoch}
	cfg.Config = c
	return mutate.ConfigFile(img, cfg)
}

// Write builds the image and writes it to a docker-archive tarball tagged ref.
func Write(spec *dockerfile.Spec, binPath, arch, ref, out string) error {
	img, err := Build(spec, binPath, arch)
	if err != nil {
		return err
	}
	return writeTarball(img, ref, out)
}

// writeTarball writes img to the docker-archive out, tagged ref, replacing it only when complete.
func writeTarball(img v1.Image, ref, out string) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return err
	}
	tmp := out + ".tmp"
	if err := tarball.WriteToFile(tmp, tag, img); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}

type entry struct {
	name     string // absolute path
	dir      bool
	mode     os.FileMode
	uid, gid int
	data     []byte
	link     string // a symlink to this target
}

func baseFiles() []entry {
	passwd := "root:x:0:0:root:/root:/sbin/nologin\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
		fmt.Sprintf("nonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", NonrootUID, NonrootUID)
	group := "root:x:0:\nnobody:x:65534:\n" + fmt.Sprintf("nonroot:x:%d:\n", NonrootUID)
	es := []entry{
		{name: "/etc/passwd", mode: 0o644, data: []byte(passwd)},
		{name: "/etc/group", mode: 0o644, data: []byte(group)},
		{name: "/etc/nsswitch.conf", mode: 0o644, data: []byte("hosts: files dns\n")},
		{name: "/tmp", dir: true, mode: 0o1777},
		{name: "/home/nonroot", dir: true, mode: 0o700, uid: NonrootUID, gid: NonrootUID},
		{name: "/root", dir: true, mode: 0o700},
	}
	if ca, err := os.ReadFile(caBundle); err == nil {
		es = append(es, entry{name: caBundle, mode: 0o644, data: ca})
	}
	return withParents(es)
}

// withParents adds the missing parent folders (root-owned, 0755) and sorts by path.
func withParents(es []entry) []entry {
	have := map[string]bool{}
	for _, e := range es {
		have[e.name] = true
	}
	for _, e := range es {
		for d := path.Dir(e.name); d != "/"; d = path.Dir(d) {
			if !have[d] {
				have[d] = true
				es = append(es, entry{name: d, dir: true, mode: 0o755})
			}
		}
	}
	sort.Slice(es, func(i, j int) bool { return es[i].name < es[j].name })
	return es
}

func layer(es []entry) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		h := &tar.Header{
			Name:    strings.TrimPrefix(e.name, "/"),
			Mode:    int64(e.mode.Perm()),
			Uid:     e.uid,
			Gid:     e.gid,
			ModTime: epoch,
			Format:  tar.FormatPAX,
		}
		if e.mode&os.ModeSticky != 0 || e.mode&0o1000 != 0 {
			h.Mode |= 0o1000
		}
		switch {
		case e.dir:
			h.Typeflag, h.Name = tar.TypeDir, h.Name+"/"
		case e.link != "":
			h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, e.link, 0o777
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if !e.dir && e.link == "" {
			if _, err := tw.Write(e.data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
}

// TreeSpec describes an image whose application layer is a whole folder (a root filesystem
// assembled outside, such as an interpreter unpacked from distribution packages) rather than one
// binary.
type TreeSpec struct {
	Entrypoint []string
	User       string
	WorkDir    string
	Env        []string // added after PATH and SSL_CERT_FILE
	Labels     map[string]string
}

// BuildTree returns the image of the base layer and the folder dir as a second layer, every
// entry owned by root with its mode and symlinks kept, timestamps fixed, in path order: the same
// folder gives the same digest.
func BuildTree(spec TreeSpec, dir, arch string) (v1.Image, error) {
	base, err := layer(baseFiles())
	if err != nil {
		return nil, err
	}
	es, err := treeEntries(dir)
	if err != nil {
		return nil, err
	}
	app, err := layer(withParents(es))
	if err != nil {
		return nil, err
	}
	workDir := spec.WorkDir
	if workDir == "" {
		workDir = "/"
	}
	return assemble(arch, v1.Config{
		User:       spec.User,
		WorkingDir: workDir,
		Entrypoint: spec.Entrypoint,
		Labels:     spec.Labels,
		Env:        append(defaultEnv(), spec.Env...),
	}, base, app)
}

// WriteTree builds the image of BuildTree and writes it to a docker-archive tarball tagged ref.
func WriteTree(spec TreeSpec, dir, arch, ref, out string) error {
	img, err := BuildTree(spec, dir, arch)
	if err != nil {
		return err
	}
	return writeTarball(img, ref, out)
}

// treeEntries reads every folder, file and symlink under dir as entries rooted at "/".
// Hard links become copies; other file types (devices, sockets) are refused.
func treeEntries(dir string) ([]entry, error) {
	var es []entry
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		e := entry{name: "/" + filepath.ToSlash(rel), mode: info.Mode().Perm() | info.Mode()&os.ModeSticky}
		switch {
		case info.IsDir():
			e.dir = true
		case info.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			e.link = target
		case info.Mode().IsRegular():
			if e.data, err = os.ReadFile(p); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: unsupported file type %s", p, info.Mode().Type())
		}
		es = append(es, e)
		return nil
	})
	return es, err
}
