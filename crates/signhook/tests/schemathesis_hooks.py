"""Schemathesis hooks for the API-document test (tests/api/schemathesis.rs)."""

import schemathesis


@schemathesis.serializer("application/pdf")
def pdf(ctx, value):
    """A document upload's body: the generated value's bytes, as sent."""
    if isinstance(value, bytes):
        return value
    return str(value).encode()
