-- eden-cas metadata, schema version 1: one table per RocksDB column family
-- (src/meta/mod.rs names them), keys and values the same bytes (CBOR
-- records, binary keys). bytea compares bytewise, the order scans need.

CREATE TABLE chunks_v1 (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE packs_v1 (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE segments_v1 (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE manifests_v1 (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE artifacts_v1 (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE workers_v1 (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE groups_v1 (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE system_v1 (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE chunk_refs_v1 (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE uploads_v1 (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE upload_chunks_v1 (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE pack_scrub_v1 (k bytea PRIMARY KEY, v bytea NOT NULL);
