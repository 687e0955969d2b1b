package metamorphostreams.interop;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerGroupMetadata;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * The Java client's transactional producer against one broker, checked by consumers.
 *
 * <pre>
 * TransactionCheck --bootstrap HOST:PORT --topic NAME --check commit-abort|fencing
 * </pre>
 *
 * commit-abort: one transactional producer runs transactions over every partition, commits
 * some and aborts others; two of them also commit consumer offsets (sendOffsetsToTransaction),
 * one committed and one aborted. A last transaction stays open while a plain idempotent
 * producer appends behind it: read_committed must see none of either until it commits. At each
 * step a read_committed consumer must see exactly the committed records, at the offsets the
 * producer was given and in order; a read_uncommitted one sees aborted data too (it was
 * written, only hidden); the group's committed offsets are the committed transaction's.
 *
 * fencing: a producer commits, then leaves a transaction open; a second producer with the
 * same transactional.id initialises, which must abort the open one. The first producer then
 * sends and commits: the commit fails, with ProducerFencedException or with an abortable
 * error (Kafka answers the old epoch's produce with INVALID_PRODUCER_EPOCH, KIP-588), in
 * which case the abortTransaction that follows must throw ProducerFencedException. None of
 * its records after the fence may be visible, nor appended at all; the open transaction's
 * records are in the log but aborted; the second producer's transaction commits.
 *
 * Prints progress lines, then `RESULT {json}`; exit status 0 when everything matched, 1 on
 * any mismatch, 2 on bad usage.
 */
public final class TransactionCheck {
    static final int PARTITIONS = 3;
    static final int RECORDS_PER_TXN = 12; // four per partition
    static final Set<Integer> ABORTED = Set.of(1, 4); // which of the closed transactions abort
    static final int CLOSED_TXNS = 5; // then one more, left open for a while
    static final long READ_LIMIT_MS = 30_000;

    private final String bootstrap;
    private final String topic;
    private final List<TopicPartition> all;
    private final List<String> problems = new ArrayList<>();
    private final Map<String, Object> numbers = new LinkedHashMap<>();
    /** What read_committed must show / what reached the log at all: partition -> offset -> value. */
    private final Map<TopicPartition, TreeMap<Long, String>> committed = new HashMap<>();
    private final Map<TopicPartition, TreeMap<Long, String>> written = new HashMap<>();

    private TransactionCheck(String bootstrap, String topic) {
        this.bootstrap = bootstrap;
        this.topic = topic;
        this.all = CheckSupport.partitions(topic, PARTITIONS);
        for (TopicPartition tp : all) {
            committed.put(tp, new TreeMap<>());
            written.put(tp, new TreeMap<>());
        }
    }

    public static void main(String[] argv) {
        Map<String, String> args = CheckSupport.parseArgs(argv, 0, "--bootstrap", "--topic", "--check");
        String check = args == null ? "" : args.get("--check");
        if (!check.equals("commit-abort") && !check.equals("fencing")) {
            System.err.println("usage: TransactionCheck --bootstrap HOST:PORT --topic NAME --check commit-abort|fencing");
            System.exit(2);
        }
        TransactionCheck run = new TransactionCheck(args.get("--bootstrap"), args.get("--topic"));
        try {
            try (Admin admin = CheckSupport.admin(run.bootstrap)) {
                CheckSupport.createTopic(admin, run.topic, PARTITIONS);
                if (check.equals("commit-abort")) {
                    run.commitAbort(admin);
                } else {
                    run.fencing();
                }
            }
        } catch (Exception e) {
            System.out.println("exception:");
            e.printStackTrace(System.out);
            run.problems.add("exception: " + e);
        }
        System.exit(CheckSupport.result(check, run.numbers, run.problems));
    }

    private KafkaProducer<String, String> producer(String transactionalId) {
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        props.put(ProducerConfig.LINGER_MS_CONFIG, 5);
        props.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, (int) CheckSupport.CALL_TIMEOUT.toMillis());
        if (transactionalId != null) {
            props.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, transactionalId);
        }
        return new KafkaProducer<>(props, new StringSerializer(), new StringSerializer());
    }

    /** Sends one value to each partition in turn; returns the acknowledgements once flushed. */
    private List<Future<RecordMetadata>> send(KafkaProducer<String, String> producer, String prefix, int count) {
        List<Future<RecordMetadata>> sent = new ArrayList<>();
        for (int i = 0; i < count; i++) {
            sent.add(producer.send(new ProducerRecord<>(topic, i % PARTITIONS, "key-" + i, prefix + "-" + i)));
        }
        producer.flush();
        return sent;
    }

    /** Records where each acknowledged value landed; `visible` adds it to what read_committed shows. */
    private void record(List<Future<RecordMetadata>> sent, String prefix, boolean visible) throws Exception {
        for (int i = 0; i < sent.size(); i++) {
            RecordMetadata md = sent.get(i).get(CheckSupport.CALL_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
            TopicPartition tp = new TopicPartition(md.topic(), md.partition());
            written.get(tp).put(md.offset(), prefix + "-" + i);
            if (visible) {
                committed.get(tp).put(md.offset(), prefix + "-" + i);
            }
        }
    }

    /** Compares what a consumer read with `expected`, offset by offset; returns the records seen. */
    private int compare(String what, Map<TopicPartition, List<ConsumerRecord<String, String>>> seen,
            Map<TopicPartition, TreeMap<Long, String>> expected) {
        int count = 0;
        for (TopicPartition tp : all) {
            List<String> got = new ArrayList<>();
            seen.get(tp).forEach(r -> got.add(r.offset() + ":" + r.value()));
            List<String> want = new ArrayList<>();
            expected.get(tp).forEach((offset, value) -> want.add(offset + ":" + value));
            if (!got.equals(want)) {
                problems.add(what + ", partition " + tp.partition() + ": saw " + got + ", expected " + want);
            }
            count += got.size();
        }
        return count;
    }

    private Map<TopicPartition, List<ConsumerRecord<String, String>>> read(String isolation) {
        try (KafkaConsumer<String, String> consumer = CheckSupport.consumer(bootstrap, isolation,
                new StringDeserializer(), new StringDeserializer())) {
            return CheckSupport.readToEnd(consumer, all, READ_LIMIT_MS);
        }
    }

    // ------------------------------------------------------------------------ commit-abort

    private void commitAbort(Admin admin) throws Exception {
        String group = topic + "-group";
        ConsumerGroupMetadata groupMetadata;
        // The group's metadata as a consumer that never joined has it (generation -1, no
        // member id): what a simple consume-transform-produce loop with assign() sends.
        Properties groupProps = new Properties();
        groupProps.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        groupProps.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        try (KafkaConsumer<String, String> member = new KafkaConsumer<>(groupProps, new StringDeserializer(),
                new StringDeserializer())) {
            groupMetadata = member.groupMetadata();
        }
        TopicPartition p0 = all.get(0);
        TopicPartition p1 = all.get(1);
        try (KafkaProducer<String, String> producer = producer(topic + "-txn")) {
            producer.initTransactions();
            for (int t = 0; t < CLOSED_TXNS; t++) {
                String prefix = "txn" + t;
                producer.beginTransaction();
                List<Future<RecordMetadata>> sent = send(producer, prefix, RECORDS_PER_TXN);
                if (t == 0) {
                    producer.sendOffsetsToTransaction(Map.of(p0, new OffsetAndMetadata(10, "txn0")), groupMetadata);
                } else if (t == 1) {
                    producer.sendOffsetsToTransaction(Map.of(p0, new OffsetAndMetadata(999, "txn1"),
                            p1, new OffsetAndMetadata(999, "txn1")), groupMetadata);
                }
                if (ABORTED.contains(t)) {
                    producer.abortTransaction();
                } else {
                    producer.commitTransaction();
                }
                record(sent, prefix, !ABORTED.contains(t));
                System.out.println((ABORTED.contains(t) ? "aborted " : "committed ") + prefix);
            }
            numbers.put("committed_txns", CLOSED_TXNS - ABORTED.size());
            numbers.put("aborted_txns", ABORTED.size());
            numbers.put("read_committed_after_closed", compare("read_committed after the closed transactions",
                    read("read_committed"), committed));

            // The open transaction: its records and the plain records appended after them
            // (every partition has some of both) stay behind the last stable offset.
            producer.beginTransaction();
            String openPrefix = "txn" + CLOSED_TXNS;
            List<Future<RecordMetadata>> open = send(producer, openPrefix, RECORDS_PER_TXN);
            List<Future<RecordMetadata>> plain;
            try (KafkaProducer<String, String> plainProducer = producer(null)) {
                plain = send(plainProducer, "plain", PARTITIONS);
                record(plain, "plain", false);
            }
            record(open, openPrefix, false);
            try (KafkaConsumer<String, String> consumer = CheckSupport.consumer(bootstrap, "read_committed",
                    new StringDeserializer(), new StringDeserializer())) {
                Map<TopicPartition, Long> lso = consumer.endOffsets(all, CheckSupport.CALL_TIMEOUT);
                for (TopicPartition tp : all) {
                    long firstOpen = written.get(tp).entrySet().stream()
                            .filter(e -> e.getValue().startsWith(openPrefix + "-")).mapToLong(Map.Entry::getKey)
                            .min().orElseThrow();
                    if (lso.get(tp) != firstOpen) {
                        problems.add("with a transaction open from offset " + firstOpen + " on partition "
                                + tp.partition() + ", read_committed endOffsets gave " + lso.get(tp));
                    }
                }
                numbers.put("read_committed_while_open", compare("read_committed while a transaction is open",
                        CheckSupport.readToEnd(consumer, all, READ_LIMIT_MS), committed));
            }
            producer.commitTransaction();
            record(open, openPrefix, true);
            record(plain, "plain", true);
            System.out.println("committed " + openPrefix + " (after the plain records were appended)");
        }
        numbers.put("read_committed", compare("read_committed at the end", read("read_committed"), committed));
        numbers.put("read_uncommitted", compare("read_uncommitted at the end", read("read_uncommitted"), written));
        try (KafkaConsumer<String, String> consumer = CheckSupport.consumer(bootstrap, "read_committed",
                new StringDeserializer(), new StringDeserializer())) {
            // No transaction is open now, so the last stable offset is the log end offset.
            Map<TopicPartition, Long> lso = consumer.endOffsets(all, CheckSupport.CALL_TIMEOUT);
            try (KafkaConsumer<String, String> raw = CheckSupport.consumer(bootstrap, "read_uncommitted",
                    new StringDeserializer(), new StringDeserializer())) {
                Map<TopicPartition, Long> hw = raw.endOffsets(all, CheckSupport.CALL_TIMEOUT);
                if (!lso.equals(hw)) {
                    problems.add("with no transaction open, read_committed endOffsets " + lso
                            + " differ from read_uncommitted " + hw);
                }
            }
        }

        Map<TopicPartition, OffsetAndMetadata> offsets = admin.listConsumerGroupOffsets(group)
                .partitionsToOffsetAndMetadata().get(CheckSupport.CALL_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
        Map<TopicPartition, String> got = new TreeMap<>((a, b) -> Integer.compare(a.partition(), b.partition()));
        offsets.forEach((tp, om) -> got.put(tp, om == null ? "null" : om.offset() + "/" + om.metadata()));
        Map<TopicPartition, String> want = Map.of(p0, "10/txn0");
        if (!got.equals(want)) {
            problems.add("group " + group + " committed offsets " + got + ", expected " + want
                    + " (txn0's commit and nothing of the aborted txn1)");
        }
        numbers.put("group_offsets", got.size());
    }

    // ----------------------------------------------------------------------------- fencing

    static boolean fenced(Throwable error) {
        for (Throwable c = error; c != null; c = c.getCause()) {
            if (c instanceof ProducerFencedException) {
                return true;
            }
        }
        return false;
    }

    private void fencing() throws Exception {
        String transactionalId = topic + "-txn";
        KafkaProducer<String, String> first = producer(transactionalId);
        try {
            first.initTransactions();
            first.beginTransaction();
            List<Future<RecordMetadata>> sent = send(first, "first-committed", RECORDS_PER_TXN);
            first.commitTransaction();
            record(sent, "first-committed", true);

            first.beginTransaction();
            sent = send(first, "first-open", RECORDS_PER_TXN);
            record(sent, "first-open", false);
            System.out.println("first producer: one transaction committed, one left open");

            try (KafkaProducer<String, String> second = producer(transactionalId)) {
                second.initTransactions(); // aborts the first producer's open transaction
                System.out.println("second producer initialised with the same transactional.id");

                List<Future<RecordMetadata>> late = new ArrayList<>();
                Exception commitError = null;
                Exception abortError = null;
                try {
                    for (int i = 0; i < RECORDS_PER_TXN; i++) {
                        late.add(first.send(new ProducerRecord<>(topic, i % PARTITIONS, "key-" + i, "first-late-" + i)));
                    }
                    first.commitTransaction();
                } catch (Exception e) {
                    commitError = e;
                }
                // A produce with the old epoch fails with an abortable error (KIP-588); the
                // abort that the client's contract then asks for is where the fence shows.
                if (commitError != null && !fenced(commitError)) {
                    try {
                        first.abortTransaction();
                    } catch (Exception e) {
                        abortError = e;
                    }
                }
                numbers.put("commit_error", String.valueOf(commitError));
                numbers.put("abort_error", String.valueOf(abortError));
                System.out.println("first producer after the fence: commit gave " + commitError + ", abort gave " + abortError);
                if (!fenced(commitError) && !fenced(abortError)) {
                    problems.add("the fenced producer's commitTransaction gave " + commitError
                            + " and abortTransaction " + abortError + ", expected a ProducerFencedException");
                }
                int lateAcked = 0;
                for (Future<RecordMetadata> f : late) {
                    if (!f.isDone()) {
                        continue;
                    }
                    try {
                        RecordMetadata md = f.get();
                        lateAcked++;
                        problems.add("a fenced producer's record was acknowledged at " + md.partition() + "@" + md.offset());
                    } catch (ExecutionException expected) {
                        // refused, as it should be
                    }
                }
                numbers.put("late_acknowledged", lateAcked);

                second.beginTransaction();
                sent = send(second, "second", RECORDS_PER_TXN);
                second.commitTransaction();
                record(sent, "second", true);
                System.out.println("second producer committed");
            }
        } finally {
            first.close(Duration.ZERO);
        }
        numbers.put("read_committed", compare("read_committed after the fence", read("read_committed"), committed));
        // The open transaction's records were written and aborted; the late ones never appended.
        numbers.put("read_uncommitted", compare("read_uncommitted after the fence", read("read_uncommitted"), written));
    }
}
