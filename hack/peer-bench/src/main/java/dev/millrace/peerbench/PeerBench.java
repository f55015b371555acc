package dev.millrace.peerbench;

import java.time.Duration;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.state.Stores;

/**
 * The Kafka Streams side of Millrace's peer benchmark (cmd/millrace-bench peer): the same three
 * jobs as the Millrace Pipelines it is compared with, written as a Kafka Streams user would.
 *
 * <pre>
 * java -cp ... dev.millrace.peerbench.PeerBench --job identity|upper|wordcount --bootstrap HOST:PORT
 *      --app-id ID --input TOPIC --output TOPIC --guarantee at_least_once|exactly_once_v2
 *      --commit-ms 100 --cache-bytes N --state-dir DIR
 * </pre>
 *
 * identity copies every record; upper upper-cases the value; wordcount splits each line on spaces,
 * re-keys by word (through Kafka Streams' repartition topic), counts per word in an in-memory store
 * (as Millrace's Memory state backend, both with a changelog topic) and writes the running count as
 * a decimal string. One stream thread. It runs until SIGTERM.
 */
public final class PeerBench {
  private PeerBench() {}

  public static void main(String[] argv) throws Exception {
    Map<String, String> a = new HashMap<>();
    for (int i = 0; i + 1 < argv.length; i += 2) {
      if (!argv[i].startsWith("--")) {
        throw new IllegalArgumentException("want --name value pairs, got " + Arrays.toString(argv));
      }
      a.put(argv[i].substring(2), argv[i + 1]);
    }
    String job = req(a, "job");
    String in = req(a, "input");
    String out = req(a, "output");

    Properties p = new Properties();
    p.put(StreamsConfig.APPLICATION_ID_CONFIG, req(a, "app-id"));
    p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, req(a, "bootstrap"));
    p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
    p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, req(a, "guarantee"));
    p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, Long.parseLong(a.getOrDefault("commit-ms", "100")));
    if (a.containsKey("cache-bytes")) {
      p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, Long.parseLong(a.get("cache-bytes")));
    }
    p.put(StreamsConfig.STATE_DIR_CONFIG, req(a, "state-dir"));
    p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
    p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");

    StreamsBuilder b = new StreamsBuilder();
    switch (job) {
      case "identity":
        b.stream(in, Consumed.with(Serdes.ByteArray(), Serdes.ByteArray()))
            .to(out, Produced.with(Serdes.ByteArray(), Serdes.ByteArray()));
        break;
      case "upper":
        b.stream(in, Consumed.with(Serdes.ByteArray(), Serdes.String()))
            .mapValues(v -> v.toUpperCase(Locale.ROOT))
            .to(out, Produced.with(Serdes.ByteArray(), Serdes.String()));
        break;
      case "wordcount":
        b.stream(in, Consumed.with(Serdes.ByteArray(), Serdes.String()))
            .flatMap((k, line) -> Arrays.stream(line.split(" "))
                .filter(w -> !w.isEmpty())
                .map(w -> KeyValue.pair(w.toLowerCase(Locale.ROOT), ""))
                .toList())
            .groupByKey(Grouped.with(Serdes.String(), Serdes.String()))
            .count(Materialized.<String, Long>as(Stores.inMemoryKeyValueStore("counts"))
                .withKeySerde(Serdes.String()).withValueSerde(Serdes.Long()))
            .toStream()
            .mapValues(n -> Long.toString(n))
            .to(out, Produced.with(Serdes.String(), Serdes.String()));
        break;
      default:
        throw new IllegalArgumentException("unknown --job " + job);
    }

    KafkaStreams streams = new KafkaStreams(b.build(), p);
    CountDownLatch done = new CountDownLatch(1);
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      streams.close(Duration.ofSeconds(10));
      done.countDown();
    }));
    streams.setUncaughtExceptionHandler(e -> {
      e.printStackTrace();
      return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
    });
    streams.start();
    done.await();
  }

  private static String req(Map<String, String> a, String k) {
    String v = a.get(k);
    if (v == null) {
      throw new IllegalArgumentException("missing --" + k);
    }
    return v;
  }
}
