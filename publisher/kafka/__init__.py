"""Kafka I/O: client configuration, topics, the state topic, the transactional sink."""
