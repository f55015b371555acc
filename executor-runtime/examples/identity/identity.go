// Package identity is the identity function: every input is emitted unchanged. It measures the
// executor's own overhead in benchmarks.
package identity

import (
	"context"

	"github.com/millrace-dev/millrace/executor-runtime/sdk"
)

// Handler emits each record's key, value and headers unchanged to the only output stream.
func Handler() sdk.Handler {
	return sdk.Map(func(_ context.Context, r sdk.Record) (sdk.Output, error) {
		return sdk.Output{Key: r.Key, Value: r.Value, Headers: r.Headers, Timestamp: r.Timestamp}, nil
	})
}
