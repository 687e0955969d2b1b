package metamorphostreams.interop;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.LongDeserializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.streams.CloseOptions;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Produced;

/**
 * A Kafka Streams word count with processing.guarantee=exactly_once_v2, and its checker.
 *
 * <pre>
 * WordCountEos run --bootstrap HOST:PORT --app-id ID --input T --output T --state-dir DIR
 *                  --produce-from N --produce-count M
 * WordCountEos verify --bootstrap HOST:PORT --input T --output T --lines N [--wait-ms MS]
 * </pre>
 *
 * run: creates the topics if needed, appends lines N..N+M-1 (deterministic text, key
 * "line-i") to the input, then runs the application (lines -> words, repartitioned by word,
 * counted in a persistent store -> counts topic) until SIGTERM, which closes it and leaves the
 * group. It prints `state S` on state changes and `progress lines=K` as lines go through (in
 * this process, committed or not), so a test can kill it mid-way. Record caches are off, so
 * every input word gives exactly one count update downstream.
 *
 * verify: reads the input with read_committed (the truth: the words of every line), then the
 * counts topic with read_committed until every word's last count is its true count (or the
 * wait ends). Exactly once means each word's committed updates are exactly 1, 2, ..., n: a
 * repeated or skipped number is double or lost counting. Prints `RESULT {json}`; exit status
 * 0 when exact, 1 otherwise, 2 on bad usage.
 */
public final class WordCountEos {
    static final int INPUT_PARTITIONS = 3;
    static final int OUTPUT_PARTITIONS = 2;
    static final List<String> VOCABULARY = List.of(
            "apple", "Brook", "cedar", "delta", "ember", "fjord", "grove", "harbor", "iris", "jade",
            "kelp", "lumen", "maple", "north", "opal", "pine", "quartz", "river", "stone", "tide",
            "umber", "vale", "willow", "yarrow", "zephyr");
    static final int PROGRESS_EVERY = 50; // lines between progress lines
    static final long DEFAULT_WAIT_MS = 60_000;

    private WordCountEos() {}

    /** Line i: 1 to 6 words with punctuation and mixed case, so splitting has work to do. */
    static String line(long i) {
        StringBuilder b = new StringBuilder();
        int words = 1 + (int) (i % 6);
        for (int j = 0; j < words; j++) {
            int pick = (int) ((i * 7 + j * 11 + (i / 3) * j) % VOCABULARY.size());
            b.append(j == 0 ? "" : (j % 3 == 0 ? ", " : " ")).append(VOCABULARY.get(pick));
        }
        return b.append(i % 4 == 0 ? "." : "").toString();
    }

    static List<String> words(String line) {
        List<String> out = new ArrayList<>();
        for (String w : line.toLowerCase().split("\\W+")) {
            if (!w.isEmpty()) {
                out.add(w);
            }
        }
        return out;
    }

    public static void main(String[] argv) throws Exception {
        String mode = argv.length > 0 ? argv[0] : "";
        Map<String, String> args = switch (mode) {
            case "run" -> CheckSupport.parseArgs(argv, 1, "--bootstrap", "--app-id", "--input", "--output",
                    "--state-dir", "--produce-from", "--produce-count");
            case "verify" -> CheckSupport.parseArgs(argv, 1, "--bootstrap", "--input", "--output", "--lines");
            default -> null;
        };
        if (args == null) {
            System.err.println("usage: WordCountEos run --bootstrap B --app-id ID --input T --output T"
                    + " --state-dir DIR --produce-from N --produce-count M\n"
                    + "       WordCountEos verify --bootstrap B --input T --output T --lines N [--wait-ms MS]");
            System.exit(2);
        }
        System.exit(mode.equals("run") ? run(args) : verify(args));
    }

    // --------------------------------------------------------------------------------- run

    static int run(Map<String, String> args) throws Exception {
        String bootstrap = args.get("--bootstrap");
        String input = args.get("--input");
        String output = args.get("--output");
        try (Admin admin = CheckSupport.admin(bootstrap)) {
            CheckSupport.createTopic(admin, input, INPUT_PARTITIONS);
            CheckSupport.createTopic(admin, output, OUTPUT_PARTITIONS);
        }
        long from = Long.parseLong(args.get("--produce-from"));
        long count = Long.parseLong(args.get("--produce-count"));
        produceLines(bootstrap, input, from, count);
        System.out.println("produced lines " + from + ".." + (from + count - 1));
        System.out.flush();

        AtomicLong lines = new AtomicLong();
        StreamsBuilder builder = new StreamsBuilder();
        KStream<String, String> source = builder.stream(input);
        source.peek((key, value) -> {
                    long n = lines.incrementAndGet();
                    if (n % PROGRESS_EVERY == 0) {
                        System.out.println("progress lines=" + n);
                        System.out.flush();
                    }
                })
                .flatMapValues(WordCountEos::words)
                .groupBy((key, word) -> word, Grouped.with("words", Serdes.String(), Serdes.String()))
                .count()
                .toStream()
                .to(output, Produced.with(Serdes.String(), Serdes.Long()));

        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, args.get("--app-id"));
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 100);
        props.put(StreamsConfig.STATE_DIR_CONFIG, args.get("--state-dir"));
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
        props.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
        props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
        props.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        props.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        // A SIGKILLed member stays in the group until its session times out; the broker's
        // minimum keeps the restart quick. Small polls let a kill land mid-way.
        props.put(StreamsConfig.consumerPrefix(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG), 6_000);
        props.put(StreamsConfig.consumerPrefix(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG), 1_000);
        props.put(StreamsConfig.consumerPrefix(ConsumerConfig.MAX_POLL_RECORDS_CONFIG), 100);

        KafkaStreams streams = new KafkaStreams(builder.build(), props);
        CountDownLatch finished = new CountDownLatch(1);
        AtomicInteger status = new AtomicInteger(0);
        streams.setStateListener((now, before) -> {
            System.out.println("state " + now);
            System.out.flush();
            if (now == KafkaStreams.State.ERROR) {
                status.set(1);
                finished.countDown();
            }
        });
        streams.setUncaughtExceptionHandler(e -> {
            System.out.println("uncaught exception:");
            e.printStackTrace(System.out);
            status.set(1);
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            streams.close(CloseOptions.groupMembershipOperation(CloseOptions.GroupMembershipOperation.LEAVE_GROUP)
                    .withTimeout(Duration.ofSeconds(20)));
            System.out.println("closed after " + lines.get() + " lines");
            System.out.flush();
            finished.countDown();
        }, "close-streams"));
        streams.start();
        finished.await();
        if (status.get() != 0) {
            streams.close(Duration.ofSeconds(10));
        }
        return status.get();
    }

    static void produceLines(String bootstrap, String input, long from, long count) throws Exception {
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        props.put(ProducerConfig.LINGER_MS_CONFIG, 5);
        List<Future<RecordMetadata>> sent = new ArrayList<>();
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(props, new StringSerializer(),
                new StringSerializer())) {
            for (long i = from; i < from + count; i++) {
                sent.add(producer.send(new ProducerRecord<>(input, "line-" + i, line(i))));
            }
            producer.flush();
        }
        for (Future<RecordMetadata> f : sent) {
            f.get(); // flushed: done, and throws if the broker refused the line
        }
    }

    // ------------------------------------------------------------------------------ verify

    static int verify(Map<String, String> args) {
        String bootstrap = args.get("--bootstrap");
        long lines = Long.parseLong(args.get("--lines"));
        long waitMs = Long.parseLong(args.getOrDefault("--wait-ms", Long.toString(DEFAULT_WAIT_MS)));
        List<String> problems = new ArrayList<>();
        Map<String, Object> numbers = new LinkedHashMap<>();

        Map<String, Long> truth = new TreeMap<>();
        Map<String, Integer> seenLines = new HashMap<>();
        try (KafkaConsumer<String, String> consumer = CheckSupport.consumer(bootstrap, "read_committed",
                new StringDeserializer(), new StringDeserializer())) {
            var read = CheckSupport.readToEnd(consumer, CheckSupport.partitions(args.get("--input"), INPUT_PARTITIONS),
                    waitMs);
            for (List<ConsumerRecord<String, String>> records : read.values()) {
                for (ConsumerRecord<String, String> r : records) {
                    seenLines.merge(r.key(), 1, Integer::sum);
                    words(r.value()).forEach(w -> truth.merge(w, 1L, Long::sum));
                }
            }
        }
        for (long i = 0; i < lines; i++) {
            Integer n = seenLines.remove("line-" + i);
            if (n == null || n != 1) {
                problems.add("input holds line-" + i + " " + (n == null ? 0 : n) + " times");
            }
        }
        if (!seenLines.isEmpty()) {
            problems.add("input holds unexpected lines " + seenLines.keySet());
        }
        numbers.put("lines", lines);
        numbers.put("words", truth.size());
        numbers.put("word_occurrences", truth.values().stream().mapToLong(Long::longValue).sum());

        // Each word's committed count updates, in order (a word's updates share a partition).
        Map<String, List<Long>> updates = new TreeMap<>();
        List<TopicPartition> all = CheckSupport.partitions(args.get("--output"), OUTPUT_PARTITIONS);
        long waited = System.currentTimeMillis();
        try (KafkaConsumer<String, Long> consumer = CheckSupport.consumer(bootstrap, "read_committed",
                new StringDeserializer(), new LongDeserializer())) {
            consumer.assign(all);
            consumer.seekToBeginning(all);
            long deadline = System.currentTimeMillis() + waitMs;
            while (!caughtUp(truth, updates) && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, Long> r : consumer.poll(Duration.ofMillis(200))) {
                    updates.computeIfAbsent(r.key(), k -> new ArrayList<>()).add(r.value());
                }
            }
            // Anything committed after the counts looked complete is double counting: read on
            // to the end as it stands now.
            Map<TopicPartition, Long> end = consumer.endOffsets(all, CheckSupport.CALL_TIMEOUT);
            long tailDeadline = System.currentTimeMillis() + 10_000;
            while (all.stream().anyMatch(tp -> consumer.position(tp, CheckSupport.CALL_TIMEOUT) < end.get(tp))
                    && System.currentTimeMillis() < tailDeadline) {
                for (ConsumerRecord<String, Long> r : consumer.poll(Duration.ofMillis(200))) {
                    updates.computeIfAbsent(r.key(), k -> new ArrayList<>()).add(r.value());
                }
            }
        }
        numbers.put("waited_ms", System.currentTimeMillis() - waited);
        long total = 0;
        for (Map.Entry<String, Long> e : truth.entrySet()) {
            List<Long> got = updates.getOrDefault(e.getKey(), List.of());
            total += got.size();
            List<Long> want = new ArrayList<>();
            for (long n = 1; n <= e.getValue(); n++) {
                want.add(n);
            }
            if (!got.equals(want)) {
                problems.add("word " + e.getKey() + ": true count " + e.getValue() + ", committed updates "
                        + describe(got));
            }
        }
        for (String word : updates.keySet()) {
            if (!truth.containsKey(word)) {
                problems.add("counts for a word no line holds: " + word + " " + updates.get(word));
            }
        }
        numbers.put("count_updates", total);
        Map<String, Long> finals = new TreeMap<>();
        updates.forEach((w, list) -> finals.put(w, list.get(list.size() - 1)));
        numbers.put("final_counts", finals.toString());
        return CheckSupport.result("wordcount", numbers, problems);
    }

    static boolean caughtUp(Map<String, Long> truth, Map<String, List<Long>> updates) {
        for (Map.Entry<String, Long> e : truth.entrySet()) {
            List<Long> got = updates.get(e.getKey());
            if (got == null || got.get(got.size() - 1) < e.getValue()) {
                return false;
            }
        }
        return true;
    }

    /** A count sequence, short: runs of consecutive numbers folded ("1..40, 38..52"). */
    static String describe(List<Long> values) {
        List<String> parts = new ArrayList<>();
        int i = 0;
        while (i < values.size()) {
            int j = i;
            while (j + 1 < values.size() && values.get(j + 1) == values.get(j) + 1) {
                j++;
            }
            parts.add(i == j ? values.get(i).toString() : values.get(i) + ".." + values.get(j));
            i = j + 1;
        }
        return parts.size() + " run(s) [" + String.join(", ", parts) + "] of " + values.size() + " updates";
    }
}
