package ordinal

import "testing"

func TestParse(t *testing.T) {
	cases := []struct {
		reason string
		name   string
		want   int
		err    bool
	}{
		{reason: "a StatefulSet pod name ends in its ordinal", name: "wc-sum-12", want: 12},
		{reason: "ordinal zero", name: "demo-0", want: 0},
		{reason: "no dash", name: "laptop", err: true},
		{reason: "a trailing dash", name: "wc-", err: true},
		{reason: "a non-numeric suffix", name: "wc-abc", err: true},
	}
	for _, tc := range cases {
		got, err := Parse(tc.name)
		if (err != nil) != tc.err || (!tc.err && got != tc.want) {
			t.Errorf("%s: Parse(%q) = %d, %v; want %d, error %v", tc.reason, tc.name, got, err, tc.want, tc.err)
		}
	}
}

func TestFromEnvPrefersMillraceOrdinal(t *testing.T) {
	t.Setenv(EnvOrdinal, "3")
	t.Setenv("POD_NAME", "x-7")
	if n, err := FromEnv(); err != nil || n != 3 {
		t.Fatalf("FromEnv() = %d, %v; want 3", n, err)
	}
	t.Setenv(EnvOrdinal, "")
	if n, err := FromEnv(); err != nil || n != 7 {
		t.Fatalf("FromEnv() from POD_NAME = %d, %v; want 7", n, err)
	}
}
