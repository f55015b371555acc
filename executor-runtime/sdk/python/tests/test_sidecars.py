"""The SDK against the real millrace-io and millrace-state binaries, on the embedded Kafka (kfake)
and on the real broker: ordering, batching, dead letters, state restore, reload, shutdown."""

from __future__ import annotations

import collections
import os
import threading
import time

import pytest

from conftest import Entity, wait_for

SUMS = ["wordcount:sum", "functions/asum.py"]


def words(topic, *ws, partition=None):
    return [(w, "1") if partition is None else (w, "1", partition) for w in ws]


def counts_by_word(kafka, topic):
    seen = collections.defaultdict(list)
    for r in kafka.read(topic):
        seen[r["key"].decode()].append(int(r["value"]))
    return seen


def wait_counts(kafka, topic, truth, timeout=60):
    def done():
        seen = counts_by_word(kafka, topic)
        return seen if {w: (c[-1] if c else 0) for w, c in seen.items()} == truth else None

    try:
        return wait_for(f"counts {truth} in {topic}", done, timeout)
    except AssertionError:
        raise AssertionError(f"counts in {topic}: {dict(counts_by_word(kafka, topic))}, want last values {truth}") from None


@pytest.mark.parametrize("function", SUMS)
def test_sum_exactly_once_counts_every_word_in_order(kafka, pods, function):
    words_t, counts_t = kafka.name("words"), kafka.name("counts")
    e = Entity(kafka, "sum", [words_t], [counts_t], stateful=True, guarantee="ExactlyOnce")
    corpus = ["a", "b", "a", "c", "a", "b", "d", "a"] * 25
    truth = collections.Counter(corpus)
    kafka.produce(words_t, words(words_t, *corpus))
    pod = pods(e, function)
    seen = wait_counts(kafka, counts_t, dict(truth))
    # Exactly once and in order: every word's counts, read_committed, are 1..n.
    for w, n in truth.items():
        assert seen[w] == list(range(1, n + 1)), f"counts of {w}"
    assert pod.stop() == {"function": 0, "io": 0, "state": 0}


def test_batches_keep_partition_order_and_respect_max_batch_records(kafka, pods, tmp_path):
    in_t, out_t = kafka.name("in"), kafka.name("out")
    e = Entity(kafka, "identity", [in_t], [out_t], partitions=2, max_batch=7)
    records = [(f"k{i}", f"{i}", i % 2) for i in range(200)]
    kafka.produce(in_t, records)
    log = tmp_path / "batches"
    pod = pods(e, "functions/batches.py", env={"BATCH_LOG": str(log)})
    wait_for("200 outputs", lambda: len(kafka.read(out_t)) >= 200)
    outs = kafka.read(out_t)
    assert len(outs) == 200
    # Identity keeps each input partition's order; outputs are partitioned by key, and each key
    # is one record here, so compare the order within each input partition.
    assert sorted(int(r["value"]) for r in outs) == list(range(200))
    by_key_partition = collections.defaultdict(list)
    for r in sorted(outs, key=lambda r: (r["partition"], r["offset"])):
        by_key_partition[r["partition"]].append(int(r["value"]))
    for vs in by_key_partition.values():
        for p in (0, 1):
            mine = [v for v in vs if v % 2 == p]
            assert mine == sorted(mine), "records of one input partition came out of order"
    assert pod.stop()["function"] == 0
    sizes = [int(x) for x in log.read_text().split()]
    assert sum(sizes) == 200 and max(sizes) <= 7 and max(sizes) > 1, sizes


@pytest.mark.parametrize("function", SUMS)
def test_a_poison_record_goes_to_the_dead_letter_topic_with_its_origin(kafka, pods, function):
    words_t, counts_t = kafka.name("words"), kafka.name("counts")
    e = Entity(kafka, "sum", [words_t], [counts_t], partitions=1, stateful=True, guarantee="ExactlyOnce")
    kafka.produce(words_t, [("a", "1"), ("a", "x"), ("a", b"\xff"), ("a", "1")])
    pods(e, function)
    wait_counts(kafka, counts_t, {"a": 2})
    dead = wait_for("two dead letters", lambda: (lambda d: d if len(d) == 2 else None)(kafka.read(words_t + ".dlq")))
    assert [d["value"] for d in dead] == [b"x", b"\xff"]
    for d, offset, err in zip(dead, ("1", "2"), ("count b'x' is not a number", "count b'\\xff' is not a number")):
        assert d["key"] == b"a"
        assert d["headers"]["millrace.source.topic"] == words_t.encode()
        assert d["headers"]["millrace.source.partition"] == b"0"
        assert d["headers"]["millrace.source.offset"] == offset.encode()
        assert d["headers"]["millrace.error"] == err.encode()
    assert counts_by_word(kafka, counts_t)["a"] == [1, 2]


@pytest.mark.parametrize("function", SUMS)
def test_state_is_restored_from_the_changelog_by_a_new_pod(kafka, pods, function):
    words_t, counts_t = kafka.name("words"), kafka.name("counts")
    e = Entity(kafka, "sum", [words_t], [counts_t], stateful=True, guarantee="ExactlyOnce")
    first, second = ["a", "b", "a", "c", "a", "b"], ["a", "c", "d", "a"]
    kafka.produce(words_t, words(words_t, *first))
    pod = pods(e, function)
    wait_counts(kafka, counts_t, {"a": 3, "b": 2, "c": 1})
    assert pod.stop() == {"function": 0, "io": 0, "state": 0}
    # A new pod: a fresh function and a state sidecar with an empty store.
    pods(e, function)
    kafka.produce(words_t, words(words_t, *second))
    seen = wait_counts(kafka, counts_t, {"a": 5, "b": 2, "c": 2, "d": 1})
    assert seen["a"] == [1, 2, 3, 4, 5] and seen["c"] == [1, 2]


def test_a_config_change_reaches_the_function_without_a_restart(kafka, pods):
    in_t, out_t = kafka.name("in"), kafka.name("out")
    e = Entity(kafka, "identity", [in_t], [out_t], partitions=1, user_config={"stamp": "v1"})
    pod = pods(e, "functions/stamp.py")
    kafka.produce(in_t, [("k", "before")])
    wait_for("the first output", lambda: kafka.read(out_t))
    pid = pod.function.proc.pid
    e.update(lambda c: c.update(userConfig={"stamp": "v2"}))
    wait_for("the reload callback", lambda: "config reloaded: {'stamp': 'v1'} -> {'stamp': 'v2'}" in pod.function.log(), 30)
    kafka.produce(in_t, [("k", "after")])
    outs = wait_for("the second output", lambda: (lambda o: o if len(o) >= 2 else None)(kafka.read(out_t)))
    stamps = {r["value"]: r["headers"]["millrace-config-stamp"] for r in outs}
    assert stamps == {b"before": b"v1", b"after": b"v2"}
    assert pod.function.proc.pid == pid and pod.function.proc.poll() is None, "the function restarted"


@pytest.mark.parametrize("function", SUMS)
def test_shutdown_in_the_kubelets_order_commits_what_the_function_answered(kafka, pods, function):
    """SIGTERM to the function first while records flow: it tells the sidecar it stops, the sidecar
    commits and closes the session, the function exits 0 without its hard stop; then the sidecars.
    The committed offsets cover exactly the outputs (sum emits one count per input)."""
    words_t, counts_t = kafka.name("words"), kafka.name("counts")
    e = Entity(kafka, "sum", [words_t], [counts_t], stateful=True, guarantee="AtLeastOnce")
    pod = pods(e, function)
    stop = threading.Event()

    def produce():
        i = 0
        while not stop.is_set():
            kafka.produce(words_t, words(words_t, *(f"w{(i + j) % 13}" for j in range(20))))
            i += 20
            time.sleep(0.005)

    t = threading.Thread(target=produce)
    t.start()
    try:
        wait_for("50 counts", lambda: len(kafka.read(counts_t, committed=False)) >= 50)
        code = pod.function.terminate()
    finally:
        stop.set()
        t.join()
    assert code == 0, pod.function.log()
    assert "stopping hard" not in pod.function.log()
    assert "told the I/O sidecar that the function is stopping" in pod.function.log()
    assert "the function is stopping" in pod.io.log()
    assert pod.io.terminate() == 0
    assert pod.state.terminate() == 0
    committed = sum(pod_offsets for pod_offsets in kafka.offsets(e.group).get(words_t, {}).values())
    outputs = len(kafka.read(counts_t, committed=False))
    assert committed == outputs > 0
