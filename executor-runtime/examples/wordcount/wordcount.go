// Package wordcount is the Invoker word count of the Millrace examples: Split turns lines into
// words keyed by word, Sum keeps a running count per word in state and emits it.
package wordcount

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/millrace-dev/millrace/executor-runtime/sdk"
)

// Split emits ("word", "1") for every word of the line in the record's value. Words are
// lower-cased runs of letters and digits.
func Split() sdk.Handler {
	return sdk.FlatMap(func(_ context.Context, r sdk.Record, emit func(sdk.Output)) error {
		if !isASCII(r.Value) {
			for _, w := range strings.FieldsFunc(string(r.Value), func(c rune) bool { return !unicode.IsLetter(c) && !unicode.IsNumber(c) }) {
				emit(sdk.Output{Key: []byte(strings.ToLower(w)), Value: one})
			}
			return nil
		}
		// An ASCII line, the common case, is lower-cased into one buffer whose runs of letters
		// and digits are the words: one allocation per line instead of several per word.
		lower := make([]byte, len(r.Value))
		start := -1
		for i, c := range r.Value {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			lower[i] = c
			word := 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
			switch {
			case word && start < 0:
				start = i
			case !word && start >= 0:
				emit(sdk.Output{Key: lower[start:i:i], Value: one})
				start = -1
			}
		}
		if start >= 0 {
			emit(sdk.Output{Key: lower[start:], Value: one})
		}
		return nil
	})
}

// one is the value of every word Split emits; outputs are read, never written.
var one = []byte("1")

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// Sum adds the record's value (a decimal count) to the count of its key and emits the new
// total. A value that is not a number is an error: the record goes to the dead-letter topic.
func Sum() sdk.Handler {
	return sdk.Stateful(func(_ context.Context, r sdk.Record, st sdk.State, emit func(sdk.Output)) error {
		n, err := strconv.ParseInt(string(r.Value), 10, 64)
		if err != nil {
			return fmt.Errorf("count %q is not a number: %w", r.Value, err)
		}
		var total int64
		if v, ok, err := st.Get(); err != nil {
			return err
		} else if ok {
			if total, err = strconv.ParseInt(string(v), 10, 64); err != nil {
				return fmt.Errorf("stored count %q is not a number: %w", v, err)
			}
		}
		total += n
		// Put keeps its own copy, so the output can share the formatted count.
		count := strconv.AppendInt(nil, total, 10)
		if err := st.Put(count); err != nil {
			return err
		}
		emit(sdk.Output{Key: r.Key, Value: count})
		return nil
	})
}
