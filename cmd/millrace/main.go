// Command millrace runs Millrace Pipelines locally, checks and renders them offline, and, installed
// as kubectl-millrace, works as a kubectl plugin for day-2 work on a cluster.
//
//	millrace run -f pipeline.yaml --input lines=words.txt --until-idle
//	millrace validate -f pipeline.yaml
//	kubectl millrace status
package main

import (
	"os"

	"github.com/millrace-dev/millrace/cmd/millrace/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args, os.Stdin, os.Stdout, os.Stderr)) }
