package cdrpublisher;

import com.fasterxml.jackson.databind.JsonNode;
import io.apicurio.registry.serde.jsonschema.JsonSchemaKafkaDeserializer;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.utils.Utils;

/**
 * Reads an events topic to its end with Apicurio's JSON Schema deserializer (validation on) and
 * prints each decoded event's Report ID, then one summary line: how many decoded, and how many
 * sit in another partition than Java's default partitioner puts their key.
 *
 * Usage: CountEvents BOOTSTRAP REGISTRY_V3_URL TOPIC
 */
public final class CountEvents {
    public static void main(String[] args) {
        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(ConsumerConfig.GROUP_ID_CONFIG, "java-recipe-" + UUID.randomUUID());
        props.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, JsonSchemaKafkaDeserializer.class.getName());
        // The recipe: Apicurio's v3 API, the 4-byte id of the Confluent framing, read as a content id
        // (what Apicurio's ccompat API hands out as the schema id), and validation on.
        // (Names spelt out, not SerdeConfig's constants, so the docs can be checked against them.)
        props.put("apicurio.registry.url", args[1]);
        props.put("apicurio.registry.id-handler", "io.apicurio.registry.serde.Default4ByteIdHandler");
        props.put("apicurio.registry.use-id", "contentId");
        props.put("apicurio.registry.serde.validation-enabled", "true");
        String topic = args[2];

        long decoded = 0;
        long misplaced = 0;
        try (KafkaConsumer<byte[], JsonNode> consumer = new KafkaConsumer<>(props)) {
            List<TopicPartition> partitions = consumer.partitionsFor(topic).stream()
                    .map(p -> new TopicPartition(topic, p.partition())).toList();
            consumer.assign(partitions);
            consumer.seekToBeginning(partitions);
            // With read_committed the end is the last stable offset.
            Map<TopicPartition, Long> ends = new HashMap<>(consumer.endOffsets(partitions));
            long deadline = System.nanoTime() + Duration.ofMinutes(3).toNanos();
            while (!ends.isEmpty()) {
                ends.entrySet().removeIf(e -> consumer.position(e.getKey()) >= e.getValue());
                if (ends.isEmpty() || System.nanoTime() > deadline) {
                    break;
                }
                for (ConsumerRecord<byte[], JsonNode> record : consumer.poll(Duration.ofMillis(500))) {
                    System.out.println(record.value().get("event_id").asText());
                    decoded++;
                    int expected = Utils.toPositive(Utils.murmur2(record.key())) % partitions.size();
                    if (expected != record.partition()) {
                        misplaced++;
                    }
                }
            }
            if (!ends.isEmpty()) {
                System.err.println("did not reach the end of " + ends.keySet());
                System.exit(1);
            }
        }
        System.out.println("decoded=" + decoded + " misplaced=" + misplaced);
    }
}
