package metamorphostreams.interop;

import java.io.BufferedOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * A plain consumer that reads every partition of a topic from offset 0 while the cluster
 * under it changes leaders: the client has to find each new leader by itself.
 *
 * <pre>
 * FollowingConsumer --bootstrap HOSTS --topic T --partitions P --expect N [--limit-ms MS]
 * </pre>
 *
 * Default consumer configs except the bootstrap servers, byte-array deserializers,
 * auto.offset.reset=earliest and enable.auto.commit=false; no group (assign() and seek to
 * 0). Polls until N records in total arrived or the limit (default 120 s) passed. Prints
 * each record as {@code partition offset value} (the value as UTF-8, {@code <null>} for a
 * null value) on stdout as it arrives, then {@code DONE count}. Exit status 0 when N records
 * arrived, 1 otherwise (an exception is printed on stderr), 2 on bad usage.
 */
public final class FollowingConsumer {
    static final long DEFAULT_LIMIT_MS = 120_000;
    static final Duration POLL = Duration.ofMillis(200);

    /** Records printed so far (kept outside consume() so a failure still reports it). */
    private static long count;

    private FollowingConsumer() {}

    public static void main(String[] argv) {
        Map<String, String> args = new HashMap<>();
        for (int i = 0; i + 1 < argv.length; i += 2) {
            args.put(argv[i], argv[i + 1]);
        }
        String bootstrap = args.get("--bootstrap");
        String topic = args.get("--topic");
        int partitions;
        long expect;
        long limitMs;
        try {
            if (argv.length % 2 != 0 || bootstrap == null || topic == null
                    || !args.containsKey("--partitions") || !args.containsKey("--expect")
                    || !List.of("--bootstrap", "--topic", "--partitions", "--expect", "--limit-ms")
                            .containsAll(args.keySet())) {
                throw new IllegalArgumentException("missing or unknown argument");
            }
            partitions = Integer.parseInt(args.get("--partitions"));
            expect = Long.parseLong(args.get("--expect"));
            limitMs = Long.parseLong(args.getOrDefault("--limit-ms", Long.toString(DEFAULT_LIMIT_MS)));
            if (partitions < 1 || expect < 0 || limitMs < 0) {
                throw new IllegalArgumentException("negative or zero number");
            }
        } catch (IllegalArgumentException e) {
            System.err.println("usage: FollowingConsumer --bootstrap HOSTS --topic T --partitions P"
                    + " --expect N [--limit-ms MS]  (" + e.getMessage() + ")");
            System.exit(2);
            return;
        }

        // Records go out as they arrive (flushed after each poll), so a caller can follow.
        PrintStream out = new PrintStream(new BufferedOutputStream(System.out, 1 << 16), false,
                StandardCharsets.UTF_8);
        int status;
        try {
            consume(out, bootstrap, topic, partitions, expect, limitMs);
            status = count >= expect ? 0 : 1;
        } catch (Exception e) {
            out.flush();
            System.err.println("FollowingConsumer failed after " + count + " record(s):");
            e.printStackTrace(System.err);
            status = 1;
        }
        out.println("DONE " + count);
        out.flush();
        System.exit(status);
    }

    private static void consume(PrintStream out, String bootstrap, String topic, int partitions,
            long expect, long limitMs) {
        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        List<TopicPartition> all = new ArrayList<>();
        for (int p = 0; p < partitions; p++) {
            all.add(new TopicPartition(topic, p));
        }
        long deadline = System.currentTimeMillis() + limitMs;
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props)) {
            consumer.assign(all);
            for (TopicPartition tp : all) {
                consumer.seek(tp, 0);
            }
            while (count < expect && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(POLL)) {
                    String value = r.value() == null ? "<null>" : new String(r.value(), StandardCharsets.UTF_8);
                    out.println(r.partition() + " " + r.offset() + " " + value);
                    count++;
                }
                out.flush();
            }
        }
    }
}
