// Package crd embeds the generated CustomResourceDefinitions, so that the CLI and the reconciler
// validate a Pipeline with exactly the rules the API server enforces.
package crd

import _ "embed"

// Pipeline is the generated CRD of streaming.millrace.dev/v1alpha1 Pipeline.
//
//go:embed bases/streaming.millrace.dev_pipelines.yaml
var Pipeline []byte
