//! Blob-store tests on every backend: the same suite on memory, fs, S3
//! (SeaweedFS), Azure Blob (Azurite) and GCS (gcp-storage-emulator), startup
//! validation through the binary, and the blob-store lease. One binary, so
//! each emulator is started once; S3 and Azure cases run in a child process
//! that holds the credentials (`support::blobs::run_in_child`).

#[allow(dead_code, unused_imports)]
#[path = "../support/mod.rs"]
mod support;

mod blobs_lease;
mod blobs_startup;
mod blobs_suite;
