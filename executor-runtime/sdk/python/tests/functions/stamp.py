"""Identity (which stamps outputs with the "stamp" user config) that logs its hot-reload callback."""

import logging

import millrace
from millrace.examples.identity import identity


def on_config(new, old):
    logging.getLogger("test").info("config reloaded: %s -> %s", dict(old) if old is not None else None, dict(new))


if __name__ == "__main__":
    millrace.main(identity, hooks=millrace.Hooks(on_config=on_config))
