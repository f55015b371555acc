// Package identity is the identity function: every input is emitted unchanged. It measures the
// executor's own overhead in benchmarks.
package identity

import (
	"context"

	"github.com/millrace-dev/millrace/executor-runtime/sdk"
)

// StampKey is the entity config key whose value, when set, identity adds to every output as the
// header StampHeader. It shows from outside which configuration a running pod applies (the
// cluster tier's hot-reload scenario); without it outputs are exactly the inputs.
const (
	StampKey    = "stamp"
	StampHeader = "millrace-config-stamp"
)

// Handler emits each record's key, value and headers unchanged to the only output stream.
func Handler() sdk.Handler {
	return sdk.Map(func(ctx context.Context, r sdk.Record) (sdk.Output, error) {
		out := sdk.Output{Key: r.Key, Value: r.Value, Headers: r.Headers, Timestamp: r.Timestamp}
		if stamp, ok := sdk.UserConfig(ctx)[StampKey]; ok {
			out.Headers = append(append([]sdk.Header(nil), r.Headers...), sdk.Header{Key: StampHeader, Value: []byte(stamp)})
		}
		return out, nil
	})
}
