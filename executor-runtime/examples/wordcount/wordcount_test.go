package wordcount_test

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unicode"

	"github.com/google/go-cmp/cmp"

	"github.com/millrace-dev/millrace/executor-runtime/examples/wordcount"
	"github.com/millrace-dev/millrace/executor-runtime/sdk"
	"github.com/millrace-dev/millrace/executor-runtime/sdk/sdktest"
)

type kv struct{ Key, Value string }

func pairs(outs []sdk.Output) []kv {
	var got []kv
	for _, o := range outs {
		got = append(got, kv{string(o.Key), string(o.Value)})
	}
	return got
}

func TestSplit(t *testing.T) {
	cases := []struct {
		reason string
		line   string
		want   []kv
	}{
		{reason: "words are split on spaces and punctuation and lower-cased", line: "Hello, hello world!", want: []kv{{"hello", "1"}, {"hello", "1"}, {"world", "1"}}},
		{reason: "an empty line emits nothing", line: "", want: nil},
		{reason: "digits are word characters, other ASCII separates", line: "R2D2\tand_c-3po\n42", want: []kv{{"r2d2", "1"}, {"and", "1"}, {"c", "1"}, {"3po", "1"}, {"42", "1"}}},
		{reason: "a line of separators emits nothing", line: " ,.;\t", want: nil},
		{reason: "non-ASCII letters and digits are word characters and lower-cased", line: "Ärger über Straße, ÉTÉ ٣x", want: []kv{{"ärger", "1"}, {"über", "1"}, {"straße", "1"}, {"été", "1"}, {"٣x", "1"}}},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			h := sdktest.New(t, wordcount.Split())
			got := pairs(h.Outputs(sdktest.KV("", tc.line)))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("%s: outputs (-want +got):\n%s", tc.reason, diff)
			}
		})
	}
}

func TestSumKeepsARunningCountPerKeyAndPartition(t *testing.T) {
	h := sdktest.New(t, wordcount.Sum())
	a0 := sdk.Record{Key: []byte("a"), Value: []byte("1")}
	a1 := sdk.Record{Key: []byte("a"), Value: []byte("1"), Partition: 1}
	got := pairs(h.Outputs(a0, a0, a1))
	got = append(got, pairs(h.Outputs(sdk.Record{Key: []byte("a"), Value: []byte("5")}))...)
	want := []kv{{"a", "1"}, {"a", "2"}, {"a", "1"}, {"a", "7"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("outputs (-want +got):\n%s", diff)
	}
	if v, _ := h.State(0, "a"); v != "7" {
		t.Errorf("state of a in partition 0 = %q, want 7", v)
	}
	if v, _ := h.State(1, "a"); v != "1" {
		t.Errorf("state of a in partition 1 = %q, want 1", v)
	}
}

func TestSumRejectsANonNumberWithoutChangingState(t *testing.T) {
	h := sdktest.New(t, wordcount.Sum())
	res := h.Process(sdktest.KV("a", "1"), sdktest.KV("a", "x"), sdktest.KV("a", "1"))
	if res[1].Err == nil {
		t.Fatal("a non-number count did not fail")
	}
	if got := pairs(res[2].Outputs); !cmp.Equal(got, []kv{{"a", "2"}}) {
		t.Errorf("after the poison record the count is %v, want a=2", got)
	}
}

// Split's ASCII path splits and lower-cases as the definition does (strings.FieldsFunc on
// letters and digits, strings.ToLower), on random lines of every ASCII character.
func TestSplitOfASCIIMatchesTheDefinition(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	h := sdktest.New(t, wordcount.Split())
	for range 500 {
		line := make([]byte, r.IntN(40))
		for i := range line {
			line[i] = byte(r.IntN(128))
		}
		var want []kv
		for _, w := range strings.FieldsFunc(string(line), func(c rune) bool { return !unicode.IsLetter(c) && !unicode.IsNumber(c) }) {
			want = append(want, kv{strings.ToLower(w), "1"})
		}
		if diff := cmp.Diff(want, pairs(h.Outputs(sdktest.KV("", string(line))))); diff != "" {
			t.Fatalf("line %q: outputs (-definition +Split):\n%s", line, diff)
		}
	}
}
