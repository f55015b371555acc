// Command imagebuild builds the project's OCI images without a container engine.
//
// The Dockerfile stays the one description of every image: imagebuild reads it (the stage of each
// binary and the base stage it starts from) and builds the same layout with go-containerregistry:
// the binary at the stage's COPY destination with its --chmod, the stage's ENTRYPOINT, the base
// stage's USER, WORKDIR and labels, on a small root filesystem that stands in for distroless'
// static nonroot image (passwd and group with the nonroot user 65532, /tmp, /home/nonroot, CA
// certificates, nsswitch.conf). Each image is written as a docker-archive tarball, which
// containerd's `ctr images import` and `docker load` both read.
//
//	go run ./hack/imagebuild -bin-dir bin/linux/amd64 -out bin/images manager=REF millrace-io=REF ...
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/millrace-dev/millrace/hack/imagebuild/dockerfile"
	"github.com/millrace-dev/millrace/hack/imagebuild/image"
)

func main() {
	df := flag.String("dockerfile", "Dockerfile", "the Dockerfile whose stages describe the images")
	binDir := flag.String("bin-dir", "bin/linux/amd64", "folder holding the static binaries")
	arch := flag.String("arch", "amd64", "GOARCH of the binaries")
	out := flag.String("out", "bin/images", "folder the docker-archive tarballs are written to")
	user := flag.String("user", "", "with -raw: the image's USER (empty: root)")
	raw := flag.String("raw", "", "BINARY_PATH=ENTRYPOINT: build one image of that binary alone, as root, without the Dockerfile (the test node's pause and CoreDNS)")
	tree := flag.String("tree", "", "build one image of this root filesystem folder on the base layer, without the Dockerfile (the Python example function)")
	entrypoint := flag.String("entrypoint", "", "with -tree: the ENTRYPOINT, words separated by spaces")
	var env, labels []string
	flag.Func("env", "with -tree: KEY=VALUE added to the image's environment (repeatable)", func(v string) error { env = append(env, v); return nil })
	flag.Func("label", "with -tree: KEY=VALUE label (repeatable)", func(v string) error { labels = append(labels, v); return nil })
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: imagebuild [flags] BINARY=IMAGE_REF...\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	var err error
	switch {
	case *tree != "":
		err = runTree(*tree, *user, *entrypoint, env, labels, *arch, *out, flag.Args())
	case *raw != "":
		err = runRaw(*raw, *user, *arch, *out, flag.Args())
	default:
		err = run(*df, *binDir, *arch, *out, flag.Args())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "imagebuild:", err)
		os.Exit(1)
	}
}

func run(dfPath, binDir, arch, out string, targets []string) error {
	src, err := os.ReadFile(dfPath)
	if err != nil {
		return err
	}
	file, err := dockerfile.Parse(string(src))
	if err != nil {
		return fmt.Errorf("%s: %w", dfPath, err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	for _, t := range targets {
		binary, ref, ok := strings.Cut(t, "=")
		if !ok || binary == "" || ref == "" {
			return fmt.Errorf("%q: want BINARY=IMAGE_REF", t)
		}
		spec, err := file.Image(binary, map[string]string{"TARGETARCH": arch})
		if err != nil {
			return err
		}
		tarball := filepath.Join(out, binary+".tar")
		if err := image.Write(spec, filepath.Join(binDir, binary), arch, ref, tarball); err != nil {
			return fmt.Errorf("%s: %w", binary, err)
		}
		fmt.Printf("%s %s\n", ref, tarball)
	}
	return nil
}

func runRaw(raw, user, arch, out string, targets []string) error {
	src, entry, ok := strings.Cut(raw, "=")
	if !ok || len(targets) != 1 {
		return fmt.Errorf("-raw wants BINARY_PATH=ENTRYPOINT and one NAME=IMAGE_REF")
	}
	nm, ref, ok := strings.Cut(targets[0], "=")
	if !ok {
		return fmt.Errorf("%q: want NAME=IMAGE_REF", targets[0])
	}
	spec := &dockerfile.Spec{Stage: nm, User: user, WorkDir: "/", Entrypoint: []string{entry}, Labels: map[string]string{},
		Files: []dockerfile.File{{Src: src, Dest: entry, Mode: 0o555}}}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	return image.Write(spec, src, arch, ref, filepath.Join(out, nm+".tar"))
}

func runTree(dir, user, entrypoint string, env, labels []string, arch, out string, targets []string) error {
	if len(targets) != 1 {
		return fmt.Errorf("-tree wants one NAME=IMAGE_REF")
	}
	nm, ref, ok := strings.Cut(targets[0], "=")
	if !ok || nm == "" || ref == "" {
		return fmt.Errorf("%q: want NAME=IMAGE_REF", targets[0])
	}
	spec := image.TreeSpec{Entrypoint: strings.Fields(entrypoint), User: user, Env: env, Labels: map[string]string{}}
	for _, l := range labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			return fmt.Errorf("label %q: want KEY=VALUE", l)
		}
		spec.Labels[k] = v
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	tarball := filepath.Join(out, nm+".tar")
	if err := image.WriteTree(spec, dir, arch, ref, tarball); err != nil {
		return fmt.Errorf("%s: %w", nm, err)
	}
	fmt.Printf("%s %s\n", ref, tarball)
	return nil
}
