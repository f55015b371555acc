//go:build cluster

package cluster

import (
	"context"
	"fmt"
)

// startStrimzi runs the Strimzi test double in this process when the suite is told to; with
// MILLRACE_E2E_STRIMZI=real, Strimzi's operators are the cluster's own.
func startStrimzi(ctx context.Context) (func(), error) {
	switch env.strimzi {
	case "real":
		return func() {}, nil
	case "double":
		return startDouble(ctx)
	default:
		return nil, fmt.Errorf("MILLRACE_E2E_STRIMZI=%q: want double or real", env.strimzi)
	}
}
