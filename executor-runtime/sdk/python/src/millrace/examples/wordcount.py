"""The word count of the Millrace examples, in Python: split turns lines into words keyed by
word, sum keeps a running count per word in state and emits it. Same counts as the Go example
(executor-runtime/examples/wordcount).

    python -m millrace.examples.wordcount split   # or: sum
"""

from __future__ import annotations

import re
import sys
from typing import Iterator, Optional

import millrace

# Words are runs of letters and digits (Go's unicode.IsLetter / unicode.IsNumber), lower-cased.
_WORD = re.compile(r"[^\W_]+")


@millrace.flat_map
def split(ctx: millrace.Context, r: millrace.Record) -> Iterator[millrace.Output]:
    """Emit ("word", "1") for every word of the line in the record's value."""
    for w in _WORD.findall(r.value.decode("utf-8", errors="replace")):
        yield millrace.Output(key=w.lower(), value=b"1")


@millrace.stateful
def sum_counts(ctx: millrace.Context, r: millrace.Record, st: millrace.State) -> Optional[millrace.Output]:
    """Add the record's value (a decimal count) to the count of its key and emit the new total. A
    value that is not a number dead-letters the record."""
    try:
        n = int(r.value)
    except ValueError:
        raise millrace.RecordError(f"count {r.value!r} is not a number") from None
    stored = st.get()
    total = n
    if stored is not None:
        try:
            total += int(stored)
        except ValueError:
            raise millrace.RecordError(f"stored count {stored!r} is not a number") from None
    st.put(str(total))
    return millrace.Output(key=r.key, value=str(total))


def main_split() -> None:
    millrace.main(split)


def main_sum() -> None:
    millrace.main(sum_counts)


if __name__ == "__main__":
    steps = {"split": split, "sum": sum_counts}
    if len(sys.argv) < 2 or sys.argv[1] not in steps:
        sys.exit("usage: python -m millrace.examples.wordcount split|sum [--socket PATH]")
    millrace.main(steps[sys.argv[1]], argv=sys.argv[2:])
