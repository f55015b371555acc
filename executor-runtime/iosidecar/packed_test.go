package iosidecar

import (
	"testing"

	functionv1 "github.com/millrace-dev/millrace/executor-runtime/proto/function/v1"
)

func TestNegotiateProtocol(t *testing.T) {
	cases := []struct {
		reason string
		opened *functionv1.Opened
		want   uint32
	}{
		{"a version 1 function lists nothing", &functionv1.Opened{ProtocolVersion: 1}, 1},
		{"an Opened without any version is version 1", &functionv1.Opened{}, 1},
		{"the highest version both speak", &functionv1.Opened{ProtocolVersion: 1, ProtocolVersions: []uint32{1, 2}}, 2},
		{"the list in any order", &functionv1.Opened{ProtocolVersion: 1, ProtocolVersions: []uint32{2, 1}}, 2},
		{"versions the sidecar does not speak are ignored", &functionv1.Opened{ProtocolVersion: 1, ProtocolVersions: []uint32{1, 2, 7}}, 2},
		{"a function that lists 1 only", &functionv1.Opened{ProtocolVersion: 1, ProtocolVersions: []uint32{1}}, 1},
		{"only unknown versions fall back to 1", &functionv1.Opened{ProtocolVersion: 1, ProtocolVersions: []uint32{9}}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			if got := negotiateProtocol(tc.opened); got != tc.want {
				t.Errorf("negotiateProtocol(%v) = %d, want %d", tc.opened, got, tc.want)
			}
		})
	}
}
