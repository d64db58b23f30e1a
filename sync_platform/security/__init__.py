"""Security: PII redaction in logs, field encryption at rest; webhook signatures come with their issue."""
