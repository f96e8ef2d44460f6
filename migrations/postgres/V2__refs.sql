-- Named references (issue 15): refs-v1 and its bounded history ref-log-v1.
CREATE TABLE refs_v1 (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE ref_log_v1 (k bytea PRIMARY KEY, v bytea NOT NULL);
