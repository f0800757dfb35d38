"""cdr-publisher: Webex Calling CDRs into Kafka, exactly once, with registered schemas."""

__version__ = "0.1.0"
