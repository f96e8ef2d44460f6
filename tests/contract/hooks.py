"""schemathesis hooks for tests/contract.rs: chunk batches
(`application/vnd.eden-cas.chunks`) are raw bytes on the wire, sent as
schemathesis sends `application/octet-stream`."""

import schemathesis

schemathesis.serializer.alias("application/vnd.eden-cas.chunks", "application/octet-stream")
