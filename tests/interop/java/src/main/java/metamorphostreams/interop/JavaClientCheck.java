package metamorphostreams.interop;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.record.TimestampType;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.utils.Utils;

/**
 * The Java client against one broker: AdminClient, idempotent acks=all producers (one per
 * codec), and a consumer that reads everything back and checks it record by record.
 *
 * <pre>
 * JavaClientCheck --bootstrap HOST:PORT --topic NAME [--records N] [--partitions P]
 *                 [--group GROUP_ID [--group-protocol classic|consumer]]
 * </pre>
 *
 * Without --group the consumer uses assign() and seekToBeginning (no group coordinator
 * needed); with it, subscribe() in that group, then commitSync and a check of the committed
 * offsets. Prints one line per step; exit status 0 when everything matched, 1 on any
 * mismatch (each one printed), 2 on bad usage.
 */
public final class JavaClientCheck {
    static final List<String> CODECS = List.of("none", "gzip", "snappy", "lz4", "zstd");
    static final Duration CALL_TIMEOUT = Duration.ofSeconds(30);
    static final long CONSUME_LIMIT_MS = 90_000; // only a stuck broker gets near this
    static final int KEYS = 97; // distinct keys, so every partition gets several
    static final int MAX_REPORTED = 25; // mismatches printed before the rest are only counted

    private final String bootstrap;
    private final String topic;
    private final int records;
    private final int partitions;
    private final String group;
    private final String groupProtocol;
    private final long baseTimestamp = System.currentTimeMillis() - 60_000;
    private final List<String> problems = new ArrayList<>();
    /** Index of each produced record by (partition, offset), filled from the send results. */
    private final Map<TopicPartition, Map<Long, Integer>> produced = new HashMap<>();

    private JavaClientCheck(Map<String, String> args) {
        bootstrap = args.get("--bootstrap");
        topic = args.get("--topic");
        records = Integer.parseInt(args.getOrDefault("--records", "3000"));
        partitions = Integer.parseInt(args.getOrDefault("--partitions", "3"));
        group = args.get("--group");
        groupProtocol = args.getOrDefault("--group-protocol", "classic");
    }

    public static void main(String[] argv) throws Exception {
        Map<String, String> args = new HashMap<>();
        for (int i = 0; i + 1 < argv.length; i += 2) {
            args.put(argv[i], argv[i + 1]);
        }
        if (argv.length % 2 != 0 || !args.containsKey("--bootstrap") || !args.containsKey("--topic")) {
            System.err.println("usage: JavaClientCheck --bootstrap HOST:PORT --topic NAME"
                    + " [--records N] [--partitions P] [--group ID [--group-protocol classic|consumer]]");
            System.exit(2);
        }
        JavaClientCheck check = new JavaClientCheck(args);
        int status;
        try {
            status = check.run();
        } catch (Exception e) {
            System.out.println("FAILED with an exception:");
            e.printStackTrace(System.out);
            status = 1;
        }
        System.out.flush();
        System.exit(status);
    }

    private int run() throws Exception {
        admin();
        produce();
        consume();
        if (!problems.isEmpty()) {
            System.out.println("FAILED: " + problems.size() + " problem(s)");
            for (String p : problems.subList(0, Math.min(problems.size(), MAX_REPORTED))) {
                System.out.println("  " + p);
            }
            return 1;
        }
        System.out.println("OK: " + records + " records through " + partitions + " partitions, "
                + CODECS.size() + " codecs, consumer mode " + (group == null ? "assign" : "group/" + groupProtocol));
        return 0;
    }

    private void problem(String what) {
        problems.add(what);
    }

    // ------------------------------------------------------------------------------ admin

    private void admin() throws Exception {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, (int) CALL_TIMEOUT.toMillis());
        try (Admin admin = Admin.create(props)) {
            long timeout = CALL_TIMEOUT.toMillis();
            admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1)))
                    .all().get(timeout, TimeUnit.MILLISECONDS);
            try {
                admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1)))
                        .all().get(timeout, TimeUnit.MILLISECONDS);
                problem("creating " + topic + " a second time succeeded");
            } catch (ExecutionException e) {
                if (!(e.getCause() instanceof TopicExistsException)) {
                    problem("creating " + topic + " again failed with " + e.getCause()
                            + ", expected TopicExistsException");
                }
            }

            DescribeClusterResult cluster = admin.describeCluster();
            Collection<Node> nodes = cluster.nodes().get(timeout, TimeUnit.MILLISECONDS);
            String clusterId = cluster.clusterId().get(timeout, TimeUnit.MILLISECONDS);
            Set<Integer> nodeIds = new HashSet<>();
            nodes.forEach(n -> nodeIds.add(n.id()));
            if (nodes.isEmpty() || clusterId == null || clusterId.isEmpty()) {
                problem("describeCluster: nodes " + nodes + ", cluster id " + clusterId);
            }

            Set<String> names = admin.listTopics().names().get(timeout, TimeUnit.MILLISECONDS);
            if (!names.contains(topic)) {
                problem("listTopics does not list " + topic + ": " + names);
            }

            // Partitions may still be getting their leader right after creation: wait for all.
            long deadline = System.currentTimeMillis() + timeout;
            TopicDescription description;
            while (true) {
                description = admin.describeTopics(List.of(topic)).allTopicNames()
                        .get(timeout, TimeUnit.MILLISECONDS).get(topic);
                boolean led = description.partitions().stream()
                        .allMatch(p -> p.leader() != null && !p.leader().isEmpty());
                if (led || System.currentTimeMillis() > deadline) {
                    break;
                }
                Thread.sleep(100);
            }
            if (description.partitions().size() != partitions || description.isInternal()) {
                problem("describeTopics: " + description);
            }
            for (TopicPartitionInfo p : description.partitions()) {
                if (p.leader() == null || !nodeIds.contains(p.leader().id()) || p.replicas().size() != 1
                        || p.isr().size() != 1) {
                    problem("describeTopics partition " + p.partition() + ": " + p + " (nodes " + nodeIds + ")");
                }
            }

            ConfigResource resource = new ConfigResource(ConfigResource.Type.TOPIC, topic);
            Config config = admin.describeConfigs(List.of(resource)).all()
                    .get(timeout, TimeUnit.MILLISECONDS).get(resource);
            ConfigEntry cleanup = config == null ? null : config.get("cleanup.policy");
            if (cleanup == null || !"delete".equals(cleanup.value())) {
                problem("describeConfigs cleanup.policy: " + cleanup);
            }
            System.out.println("admin: created " + topic + " (" + partitions + " partitions), cluster "
                    + clusterId + ", nodes " + nodeIds);
        }
    }

    // ---------------------------------------------------------------------------- records

    static byte[] key(int i) {
        return ("key-" + (i % KEYS)).getBytes(StandardCharsets.UTF_8);
    }

    static byte[] value(int i, String codec) {
        // Compressible but never constant, so every codec has work to do and a mix-up shows.
        StringBuilder b = new StringBuilder("value-").append(i).append('-').append(codec).append('|');
        for (int r = 0; r < 1 + i % 13; r++) {
            b.append("abcdefghijklmnopqrstuvwxyz");
        }
        return b.toString().getBytes(StandardCharsets.UTF_8);
    }

    static List<Header> headers(int i, String codec) {
        return List.of(
                new RecordHeader("index", Integer.toString(i).getBytes(StandardCharsets.UTF_8)),
                new RecordHeader("codec", codec.getBytes(StandardCharsets.UTF_8)),
                new RecordHeader("binary", new byte[] {0, (byte) 0xff, (byte) i}));
    }

    static String codecOf(int i, int records) {
        int perCodec = (records + CODECS.size() - 1) / CODECS.size();
        return CODECS.get(Math.min(i / perCodec, CODECS.size() - 1));
    }

    // ---------------------------------------------------------------------------- produce

    private void produce() throws Exception {
        List<Future<RecordMetadata>> sent = new ArrayList<>();
        int i = 0;
        for (String codec : CODECS) {
            Properties props = new Properties();
            props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
            props.put(ProducerConfig.ACKS_CONFIG, "all");
            props.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec);
            props.put(ProducerConfig.LINGER_MS_CONFIG, 5);
            props.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 60_000);
            props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
            props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
            try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
                for (; i < records && codecOf(i, records).equals(codec); i++) {
                    sent.add(producer.send(new ProducerRecord<>(topic, null, baseTimestamp + i, key(i),
                            value(i, codec), headers(i, codec))));
                }
                producer.flush();
            }
        }
        Map<Integer, Long> lastOffset = new HashMap<>();
        for (int n = 0; n < sent.size(); n++) {
            RecordMetadata md = sent.get(n).get(CALL_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
            int expectedPartition = Utils.toPositive(Utils.murmur2(key(n))) % partitions;
            if (md.partition() != expectedPartition) {
                problem("record " + n + " acknowledged on partition " + md.partition()
                        + ", its key hashes to " + expectedPartition);
            }
            Long previous = lastOffset.put(md.partition(), md.offset());
            if (previous != null && md.offset() != previous + 1) {
                problem("record " + n + " got offset " + md.offset() + " on partition " + md.partition()
                        + " right after offset " + previous + " (expected contiguous, in send order)");
            }
            if (previous == null && md.offset() != 0) {
                problem("first record on partition " + md.partition() + " got offset " + md.offset());
            }
            Integer clash = produced.computeIfAbsent(new TopicPartition(topic, md.partition()), p -> new HashMap<>())
                    .put(md.offset(), n);
            if (clash != null) {
                problem("records " + clash + " and " + n + " both acknowledged at " + md.partition() + "@" + md.offset());
            }
        }
        System.out.println("produce: " + sent.size() + " records acknowledged, last offsets " + lastOffset);
    }

    // ---------------------------------------------------------------------------- consume

    private void consume() {
        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        props.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, 500);
        if (group != null) {
            props.put(ConsumerConfig.GROUP_ID_CONFIG, group);
            props.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, groupProtocol);
            props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        } else {
            props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "none");
        }
        List<TopicPartition> all = new ArrayList<>();
        for (int p = 0; p < partitions; p++) {
            all.add(new TopicPartition(topic, p));
        }
        Map<TopicPartition, Long> nextExpected = new HashMap<>();
        all.forEach(tp -> nextExpected.put(tp, 0L));
        int consumed = 0;
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props)) {
            if (group == null) {
                consumer.assign(all);
                consumer.seekToBeginning(all);
            } else {
                consumer.subscribe(List.of(topic));
            }
            long deadline = System.currentTimeMillis() + CONSUME_LIMIT_MS;
            while (consumed < records && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(200))) {
                    consumed++;
                    checkRecord(r, nextExpected);
                }
            }
            if (consumed != records) {
                problem("consumed " + consumed + " records in " + CONSUME_LIMIT_MS / 1000 + " s, expected " + records);
            }
            // Nothing more may follow once every record is in.
            int extra = consumer.poll(Duration.ofMillis(300)).count();
            if (extra != 0) {
                problem(extra + " records beyond the " + records + " produced");
            }
            // Asked once the partitions are assigned (in both modes), so the consumer keeps
            // the answers instead of warning that they are for partitions it does not own.
            Map<TopicPartition, Long> end = consumer.endOffsets(all, CALL_TIMEOUT);
            Map<TopicPartition, Long> begin = consumer.beginningOffsets(all, CALL_TIMEOUT);
            for (TopicPartition tp : all) {
                int count = produced.getOrDefault(tp, Map.of()).size();
                if (end.get(tp) != count || begin.get(tp) != 0) {
                    problem(tp + ": beginning/end offsets " + begin.get(tp) + "/" + end.get(tp)
                            + ", expected 0/" + count);
                }
            }
            if (group != null) {
                consumer.commitSync(CALL_TIMEOUT);
                Map<TopicPartition, OffsetAndMetadata> committed = consumer.committed(new HashSet<>(all), CALL_TIMEOUT);
                for (TopicPartition tp : all) {
                    OffsetAndMetadata c = committed.get(tp);
                    long want = produced.getOrDefault(tp, Map.of()).size();
                    if (c == null || c.offset() != want) {
                        problem("committed offset of " + tp + ": " + c + ", expected " + want);
                    }
                }
            }
        }
        System.out.println("consume: " + consumed + " records read back and checked");
    }

    private void checkRecord(ConsumerRecord<byte[], byte[]> r, Map<TopicPartition, Long> nextExpected) {
        TopicPartition tp = new TopicPartition(r.topic(), r.partition());
        String at = tp + "@" + r.offset();
        Long next = nextExpected.get(tp);
        if (next == null) {
            problem(at + ": a partition that was never written to this topic");
            return;
        }
        if (r.offset() != next) {
            problem(at + ": expected offset " + next + " next on this partition");
        }
        nextExpected.put(tp, r.offset() + 1);
        Integer i = produced.getOrDefault(tp, Map.of()).get(r.offset());
        if (i == null) {
            problem(at + ": no record was acknowledged at this offset");
            return;
        }
        String codec = codecOf(i, records);
        if (!Arrays.equals(r.key(), key(i))) {
            problem(at + ": key " + str(r.key()) + ", expected " + str(key(i)));
        }
        if (!Arrays.equals(r.value(), value(i, codec))) {
            problem(at + ": value " + str(r.value()) + ", expected " + str(value(i, codec)));
        }
        List<Header> got = new ArrayList<>();
        r.headers().forEach(got::add);
        List<Header> want = headers(i, codec);
        boolean same = got.size() == want.size();
        for (int h = 0; same && h < got.size(); h++) {
            same = got.get(h).key().equals(want.get(h).key()) && Arrays.equals(got.get(h).value(), want.get(h).value());
        }
        if (!same) {
            problem(at + ": headers " + got + ", expected " + want);
        }
        if (r.timestampType() != TimestampType.CREATE_TIME || r.timestamp() != baseTimestamp + i) {
            problem(at + ": timestamp " + r.timestampType() + " " + r.timestamp() + ", expected CreateTime "
                    + (baseTimestamp + i));
        }
    }

    private static String str(byte[] b) {
        return b == null ? "null" : new String(b, StandardCharsets.UTF_8);
    }
}
