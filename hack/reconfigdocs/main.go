// Command reconfigdocs writes docs/reconfiguration.md, the reconfiguration contract of the
// Pipeline spec, from the table in controllers/reconfig. `make api-docs` runs it.
//
//	go run ./hack/reconfigdocs -out docs/reconfiguration.md
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/millrace-dev/millrace/controllers/reconfig"
)

func main() {
	out := flag.String("out", "", "file to write; standard output when empty")
	flag.Parse()
	doc := reconfig.Markdown()
	if *out == "" {
		os.Stdout.Write(doc)
		return
	}
	if err := os.WriteFile(*out, doc, 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "reconfigdocs: %v\n", err)
		os.Exit(1)
	}
}
