// Command bundlegen writes Millrace's OLM bundle (bundle/ and bundle.Dockerfile) from config/.
//
// It does what `operator-sdk generate bundle` would, without the binary: it builds
// config/manifests with kustomize, turns the operator's Deployment and RBAC into the
// ClusterServiceVersion's install strategy, adds the samples as alm-examples and the images as
// relatedImages, and copies the CRDs and the objects OLM installs beside the operator. The output
// depends only on the inputs, so `make bundle` followed by `git diff` shows a stale bundle.
//
//	go run ./hack/bundlegen -version 0.1.0 -image ghcr.io/millrace-dev/millrace-operator:v0.1.0 ...
package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	opts := DefaultOptions()
	flag.StringVar(&opts.Root, "root", opts.Root, "repository root holding config/")
	flag.StringVar(&opts.Version, "version", opts.Version, "semantic version of the operator, without a leading v")
	flag.StringVar(&opts.Image, "image", opts.Image, "operator image")
	flag.StringVar(&opts.IOSidecarImage, "io-sidecar-image", opts.IOSidecarImage, "image of the executors' I/O sidecar")
	flag.StringVar(&opts.StateSidecarImage, "state-sidecar-image", opts.StateSidecarImage, "image of the executors' state sidecar")
	flag.StringVar(&opts.Package, "package", opts.Package, "OLM package name")
	flag.StringVar(&opts.Channels, "channels", opts.Channels, "comma-separated OLM channels of the bundle")
	flag.StringVar(&opts.DefaultChannel, "default-channel", opts.DefaultChannel, "default OLM channel of the package")
	flag.StringVar(&opts.Replaces, "replaces", opts.Replaces, "name of the CSV this one upgrades, such as millrace.v0.1.0 (empty for the first release)")
	out := flag.String("out", "bundle", "directory to write the bundle into, relative to -root; its manifests/ and metadata/ are replaced")
	dockerfile := flag.String("dockerfile", "bundle.Dockerfile", "path of the bundle image's Dockerfile, relative to -root")
	flag.Parse()

	files, err := Generate(opts, *out, *dockerfile)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bundlegen: %v\n", err)
		os.Exit(1)
	}
	if err := Write(opts.Root, *out, files); err != nil {
		fmt.Fprintf(os.Stderr, "bundlegen: %v\n", err)
		os.Exit(1)
	}
	for _, w := range files.Warnings {
		fmt.Fprintf(os.Stderr, "bundlegen: warning: %s\n", w)
	}
}
