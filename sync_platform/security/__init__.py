"""Security: PII redaction now; field encryption and webhook signatures come with their issues."""
