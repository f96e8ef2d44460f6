//! PostgreSQL for the suites that run against both metadata engines: the
//! server `scripts/postgres.sh` started for this test run
//! (`EDEN_CAS_TEST_PG_URL`, `EDEN_CAS_TEST_PG_PASSWORD`), one schema per
//! store so tests never see each other's rows.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use eden_cas::meta::Meta;
use eden_cas::meta::postgres::{PgSettings, Postgres};

/// The file in a metadata directory that names its schema.
const MARKER: &str = "postgres-schema";

/// One schema of the test server.
pub struct Schema {
    /// Its name (`t_<ulid>`).
    pub name: String,
    /// Settings whose `search_path` is this schema.
    pub settings: PgSettings,
}

/// The test server's URL and password; panics naming the script when the
/// suite was started without it.
pub fn server() -> (String, String) {
    let url = std::env::var("EDEN_CAS_TEST_PG_URL").unwrap_or_else(|_| {
        panic!("EDEN_CAS_TEST_PG_URL is not set: run the suite through scripts/test.sh")
    });
    let password = std::env::var("EDEN_CAS_TEST_PG_PASSWORD").unwrap_or_default();
    (url, password)
}

/// Settings for `url` on the test server, with its password.
fn settings_at(url: &str) -> PgSettings {
    let (_, password) = server();
    let env = move |k: &str| (k == "PGPASSWORD").then(|| password.clone());
    PgSettings::from_url(url, None, None, &env).expect("test PostgreSQL URL")
}

/// Settings for `schema` of the test server.
pub fn settings(schema: &str) -> PgSettings {
    settings_at(&format!("{}?options=-csearch_path%3D{schema}", server().0))
}

/// Runs `statements` on the test server as `settings`' login, on a thread
/// of its own (the sync client must not run inside a tokio runtime, and
/// tests call this from async tests).
pub fn sql(settings: &PgSettings, statements: &str) {
    let (config, statements) = (settings.config.clone(), statements.to_string());
    std::thread::spawn(move || {
        let mut client = config
            .connect(postgres::NoTls)
            .expect("connect to the test PostgreSQL");
        client.batch_execute(&statements).expect(&statements);
    })
    .join()
    .expect("SQL thread");
}

/// Settings of the test server's own database (no schema chosen).
pub fn admin() -> PgSettings {
    settings_at(&server().0)
}

/// A new, migrated schema.
pub fn new_schema() -> Schema {
    let name = format!("t_{}", ulid::Ulid::new().to_string().to_lowercase());
    sql(&admin(), &format!("CREATE SCHEMA {name}"));
    let settings = settings(&name);
    Postgres::connect(&settings)
        .and_then(|p| p.migrate())
        .expect("migrate the test schema");
    Schema { name, settings }
}

/// The schema a metadata directory names, made (and named there) when the
/// directory is absent or holds none.
pub fn schema_for_dir(dir: &Path) -> Schema {
    let marker = dir.join(MARKER);
    if let Ok(name) = std::fs::read_to_string(&marker) {
        let name = name.trim().to_string();
        return Schema {
            settings: settings(&name),
            name,
        };
    }
    std::fs::create_dir_all(dir).expect("create the metadata dir");
    let schema = new_schema();
    std::fs::write(&marker, &schema.name).expect("write the schema marker");
    schema
}

impl Schema {
    /// The environment that points an `eden-cas` process at this schema
    /// (`EDEN_CAS_META_STORE` and `PGPASSWORD`).
    pub fn env(&self) -> Vec<(String, String)> {
        let (url, password) = server();
        vec![
            (
                "EDEN_CAS_META_STORE".into(),
                format!("{url}?options=-csearch_path%3D{}", self.name),
            ),
            ("PGPASSWORD".into(), password),
        ]
    }

    /// The metadata store over this schema.
    pub fn meta(&self) -> Meta {
        let kv = Postgres::open(&self.settings).expect("open the test schema");
        Meta::over(Arc::new(kv)).expect("metadata over PostgreSQL")
    }
}
