-- Group commit of small deposits (issue 16): manifest id -> the bundle
-- object holding its blob-store copy.
CREATE TABLE manifest_bundles_v1 (k bytea PRIMARY KEY, v bytea NOT NULL);
