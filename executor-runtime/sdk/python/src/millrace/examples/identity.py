"""The identity function: every input is emitted unchanged (the benchmarks' function). With the
entity config key "stamp" set, it adds its value as the header millrace-config-stamp, which shows
from outside which configuration a running function applies (as the Go example does).

    python -m millrace.examples.identity
"""

from __future__ import annotations

import millrace

STAMP_KEY = "stamp"
STAMP_HEADER = "millrace-config-stamp"


@millrace.map
def identity(ctx: millrace.Context, r: millrace.Record) -> millrace.Output:
    stamp = ctx.user_config.get(STAMP_KEY)
    if stamp is None:
        return millrace.Output(r.key, r.value, headers=r.headers, timestamp_ms=r.timestamp_ms)
    return millrace.Output(r.key, r.value, headers=(*r.headers, (STAMP_HEADER, stamp)), timestamp_ms=r.timestamp_ms)


def main() -> None:
    millrace.main(identity)


if __name__ == "__main__":
    main()
