// Package ordinal finds the StatefulSet ordinal of the pod a sidecar runs in.
package ordinal

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// EnvOrdinal overrides the ordinal (local mode and tests).
const EnvOrdinal = "MILLRACE_ORDINAL"

// FromEnv returns MILLRACE_ORDINAL, else the `-N` suffix of POD_NAME, else of the hostname.
func FromEnv() (int, error) {
	if v := os.Getenv(EnvOrdinal); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%s=%q is not a non-negative integer", EnvOrdinal, v)
		}
		return n, nil
	}
	name := os.Getenv("POD_NAME")
	if name == "" {
		h, err := os.Hostname()
		if err != nil {
			return 0, fmt.Errorf("find pod ordinal: %w", err)
		}
		name = h
	}
	return Parse(name)
}

// Parse returns the ordinal suffix of a StatefulSet pod name ("wc-sum-2" is 2).
func Parse(name string) (int, error) {
	i := strings.LastIndexByte(name, '-')
	if i < 0 || i == len(name)-1 {
		return 0, fmt.Errorf("pod name %q has no -N ordinal suffix; set %s", name, EnvOrdinal)
	}
	n, err := strconv.Atoi(name[i+1:])
	if err != nil || n < 0 {
		return 0, fmt.Errorf("pod name %q has no -N ordinal suffix; set %s", name, EnvOrdinal)
	}
	return n, nil
}
