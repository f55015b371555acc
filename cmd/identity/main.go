// Command identity is the identity Millrace function, for benchmarks.
// Usage: identity --socket /var/run/millrace/function.sock
package main

import (
	"github.com/millrace-dev/millrace/executor-runtime/examples/identity"
	"github.com/millrace-dev/millrace/executor-runtime/sdk"
)

func main() { sdk.Main(identity.Handler()) }
