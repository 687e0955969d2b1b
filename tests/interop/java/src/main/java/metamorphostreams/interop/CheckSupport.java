package metamorphostreams.interop;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.Deserializer;

/** What the transaction checks share: argument parsing, topics, reading a topic to its end, JSON. */
final class CheckSupport {
    static final Duration CALL_TIMEOUT = Duration.ofSeconds(30);
    static final int MAX_REPORTED = 20; // problems printed in the RESULT line; the rest are counted

    private CheckSupport() {}

    /** `--name value` pairs; null when the count is odd or a required name is missing. */
    static Map<String, String> parseArgs(String[] argv, int skip, String... required) {
        if ((argv.length - skip) % 2 != 0) {
            return null;
        }
        Map<String, String> args = new HashMap<>();
        for (int i = skip; i + 1 < argv.length; i += 2) {
            args.put(argv[i], argv[i + 1]);
        }
        for (String name : required) {
            if (!args.containsKey(name)) {
                return null;
            }
        }
        return args;
    }

    static Admin admin(String bootstrap) {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, (int) CALL_TIMEOUT.toMillis());
        return Admin.create(props);
    }

    /** Creates the topic unless it exists (a restarted program finds its topics there). */
    static void createTopic(Admin admin, String topic, int partitions) throws Exception {
        try {
            admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1)))
                    .all().get(CALL_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
        } catch (ExecutionException e) {
            if (!(e.getCause() instanceof TopicExistsException)) {
                throw e;
            }
        }
    }

    static List<TopicPartition> partitions(String topic, int count) {
        List<TopicPartition> all = new ArrayList<>();
        for (int p = 0; p < count; p++) {
            all.add(new TopicPartition(topic, p));
        }
        return all;
    }

    static <K, V> KafkaConsumer<K, V> consumer(String bootstrap, String isolation,
            Deserializer<K> keys, Deserializer<V> values) {
        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation);
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "none");
        return new KafkaConsumer<>(props, keys, values);
    }

    /**
     * Everything the consumer's isolation level lets it see now, per partition in offset order:
     * reads from the beginning up to endOffsets (the last stable offset under read_committed,
     * the high watermark under read_uncommitted). Throws when that takes over `limitMs`.
     */
    static <K, V> Map<TopicPartition, List<ConsumerRecord<K, V>>> readToEnd(
            KafkaConsumer<K, V> consumer, List<TopicPartition> all, long limitMs) {
        consumer.assign(all);
        consumer.seekToBeginning(all);
        Map<TopicPartition, Long> end = consumer.endOffsets(all, CALL_TIMEOUT);
        Map<TopicPartition, List<ConsumerRecord<K, V>>> seen = new HashMap<>();
        all.forEach(tp -> seen.put(tp, new ArrayList<>()));
        long deadline = System.currentTimeMillis() + limitMs;
        while (true) {
            boolean done = true;
            for (TopicPartition tp : all) {
                if (consumer.position(tp, CALL_TIMEOUT) < end.get(tp)) {
                    done = false;
                }
            }
            if (done) {
                return seen;
            }
            if (System.currentTimeMillis() > deadline) {
                throw new IllegalStateException("reading " + all + " did not reach " + end + " within "
                        + limitMs + " ms; read " + seen.values().stream().mapToInt(List::size).sum());
            }
            for (ConsumerRecord<K, V> r : consumer.poll(Duration.ofMillis(200))) {
                seen.get(new TopicPartition(r.topic(), r.partition())).add(r);
            }
        }
    }

    static String json(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            switch (c) {
                case '"' -> b.append("\\\"");
                case '\\' -> b.append("\\\\");
                case '\n' -> b.append("\\n");
                default -> {
                    if (c < 0x20) {
                        b.append(String.format("\\u%04x", (int) c));
                    } else {
                        b.append(c);
                    }
                }
            }
        }
        return b.append('"').toString();
    }

    /**
     * Prints the machine-readable line `RESULT {...}` (one JSON object: check, ok, the given
     * numbers, problems) and returns the exit status: 0 when there were no problems, else 1.
     */
    static int result(String check, Map<String, Object> numbers, List<String> problems) {
        StringBuilder b = new StringBuilder("RESULT {\"check\": ").append(json(check))
                .append(", \"ok\": ").append(problems.isEmpty());
        numbers.forEach((name, value) -> b.append(", ").append(json(name)).append(": ")
                .append(value instanceof Number || value instanceof Boolean ? value.toString() : json(String.valueOf(value))));
        b.append(", \"problem_count\": ").append(problems.size()).append(", \"problems\": [");
        for (int i = 0; i < Math.min(problems.size(), MAX_REPORTED); i++) {
            b.append(i == 0 ? "" : ", ").append(json(problems.get(i)));
        }
        System.out.println(b.append("]}"));
        System.out.flush();
        return problems.isEmpty() ? 0 : 1;
    }
}
