"""Identity that appends the size of every batch it processes to the file $BATCH_LOG."""

import os

import millrace
from millrace.examples.identity import identity

log = open(os.environ["BATCH_LOG"], "a", buffering=1)

if __name__ == "__main__":
    millrace.main(identity, hooks=millrace.Hooks(on_batch=lambda b: log.write(f"{b.records}\n")))
