//! The HTTP contract (`docs/openapi.yaml`) and the deployment files
//! (`deploy/`), checked by the tools that own their formats:
//!
//! - every route the server registers is a path and method of
//!   `docs/openapi.yaml`, and the other way round;
//! - redocly lints `docs/openapi.yaml` (`docs/redocly.yaml`: strict);
//! - schemathesis runs it against a live server, once with the admin bearer
//!   and once with a worker's: no 5xx, every status, content type, header
//!   and body as described (every error answer there is problem+json), and
//!   no operation that takes a bearer answers without one;
//! - hadolint lints `deploy/docker/Dockerfile`;
//! - check-jsonschema validates the Helm chart's `values.schema.json`
//!   (a valid JSON Schema) against the example values in
//!   `deploy/helm/examples/` merged over the chart's defaults as Helm does:
//!   each of `valid/` passes, each of `invalid/` is refused; and
//!   `deploy/compose.yaml` against the Compose specification.
//!
//! The tools are pinned and installed into `~/.cache/eden-cas-tools` by
//! `scripts/contract-tools.sh`; `scripts/test.sh` exports their paths
//! (`EDEN_CAS_HADOLINT`, …), and plain `cargo test` runs the script itself.
//! A test never skips silently: without its tool it fails, unless
//! `EDEN_CAS_SKIP_CONTRACT=1` is set on purpose (CI never sets it), which is
//! printed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::support::server::{Server, exp_id, expect_json, register_worker_body, send};
use serde_json::{Value, json};

/// The environment variables naming the tools, as the script prints them.
const TOOL_VARS: [&str; 5] = [
    "EDEN_CAS_HADOLINT",
    "EDEN_CAS_CHECK_JSONSCHEMA",
    "EDEN_CAS_SCHEMATHESIS",
    "EDEN_CAS_CONTRACT_PYTHON",
    "EDEN_CAS_REDOCLY",
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The tool named by `var`: from the environment, else from
/// `scripts/contract-tools.sh install` (run once per process). `None` only
/// with `EDEN_CAS_SKIP_CONTRACT=1`; panics when a tool cannot be had.
fn tool(var: &str) -> Option<PathBuf> {
    static INSTALLED: OnceLock<Result<Vec<(String, String)>, String>> = OnceLock::new();
    if std::env::var("EDEN_CAS_SKIP_CONTRACT").as_deref() == Ok("1") {
        eprintln!(
            "SKIPPED: contract test skipped because EDEN_CAS_SKIP_CONTRACT=1 (this is not coverage)"
        );
        return None;
    }
    if let Some(p) = std::env::var_os(var) {
        return Some(PathBuf::from(p));
    }
    let installed = INSTALLED.get_or_init(|| {
        let out = Command::new("bash")
            .arg(repo().join("scripts/contract-tools.sh"))
            .arg("install")
            .output()
            .map_err(|e| format!("running scripts/contract-tools.sh: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "scripts/contract-tools.sh install failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .filter(|(k, _)| TOOL_VARS.contains(k))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    });
    match installed {
        Ok(pairs) => match pairs.iter().find(|(k, _)| k == var) {
            Some((_, v)) => Some(PathBuf::from(v)),
            None => panic!("scripts/contract-tools.sh printed no {var}"),
        },
        Err(e) => panic!(
            "no {var} for the contract tests: {e}\n(set EDEN_CAS_SKIP_CONTRACT=1 to skip them on purpose; CI never does)"
        ),
    }
}

/// Runs `cmd` in the repository root, panicking if it cannot start.
fn run(cmd: &mut Command) -> Output {
    cmd.current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `file` (YAML) as JSON, through `scripts/lib/yamltool.py`.
fn yaml(python: &Path, args: &[&Path]) -> Value {
    let out = run(Command::new(python)
        .arg(repo().join("scripts/lib/yamltool.py"))
        .args(args));
    assert!(out.status.success(), "yamltool.py {args:?}: {}", text(&out));
    serde_json::from_slice(&out.stdout).expect("yamltool.py prints JSON")
}

// ------------------------------------------------------------ route coverage

/// `(METHOD, path)` of every route `src/http` registers, read from the
/// `configure` functions: `web::scope("P")` prefixes what it encloses,
/// `resource("P")` names the path its `.route(web::METHOD()…)` calls serve,
/// and `.route("P", web::METHOD()…)` is both at once. Default services
/// (404s) are not routes.
fn registered_routes() -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for file in [
        "src/http/ops.rs",
        "src/http/v0/mod.rs",
        "src/http/v1/mod.rs",
    ] {
        let src = std::fs::read_to_string(repo().join(file)).expect("read route file");
        // Comments may quote routes; they are not code.
        let code: String = src
            .lines()
            .map(|l| l.split("//").next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n");
        scan_routes(&code, file, &mut routes);
    }
    routes
}

fn scan_routes(code: &str, file: &str, routes: &mut BTreeSet<(String, String)>) {
    // `{name:.+}` (a segment pattern) is the path parameter `{name}`.
    let literal = |s: &str| -> String {
        let raw = s.split('"').next().unwrap_or_default();
        let mut out = String::with_capacity(raw.len());
        let mut in_pattern = false;
        for c in raw.chars() {
            match c {
                ':' if out.rfind('{') > out.rfind('}') => in_pattern = true,
                '}' => {
                    in_pattern = false;
                    out.push(c);
                }
                _ if in_pattern => {}
                _ => out.push(c),
            }
        }
        out
    };
    let method_after = |s: &str| -> String {
        let m = s.split("web::").nth(1).unwrap_or_default();
        m.split('(').next().unwrap_or_default().to_ascii_uppercase()
    };
    // (paren depth where it was opened, path) of open scopes and the resource.
    let mut scopes: Vec<(i32, String)> = Vec::new();
    let mut resource: Option<(i32, String)> = None;
    let mut depth = 0i32;
    let mut in_string = false;
    let prefix =
        |scopes: &Vec<(i32, String)>| scopes.iter().map(|(_, p)| p.as_str()).collect::<String>();
    for (i, c) in code.char_indices() {
        let rest = &code[i..];
        if in_string {
            if c == '"' && !code[..i].ends_with('\\') {
                in_string = false;
            }
            continue;
        }
        if let Some(r) = rest.strip_prefix("web::scope(\"") {
            scopes.push((depth, literal(r)));
        } else if let Some(r) = rest.strip_prefix("resource(\"") {
            resource = Some((depth, format!("{}{}", prefix(&scopes), literal(r))));
        } else if let Some(r) = rest.strip_prefix(".route(\"") {
            let path = format!("{}{}", prefix(&scopes), literal(r));
            routes.insert((method_after(r), path));
        } else if let Some(r) = rest.strip_prefix(".route(web::") {
            let (_, path) = resource
                .clone()
                .unwrap_or_else(|| panic!("{file}: a .route(web::…) outside a resource"));
            routes.insert((method_after(&format!("web::{r}")), path));
        }
        match c {
            '"' => in_string = true,
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                scopes.retain(|(d, _)| *d <= depth);
                if resource.as_ref().is_some_and(|(d, _)| *d > depth) {
                    resource = None;
                }
            }
            _ => {}
        }
    }
}

/// `(METHOD, path)` of every operation of `docs/openapi.yaml`.
fn documented_routes(python: &Path) -> BTreeSet<(String, String)> {
    let spec = yaml(
        python,
        &[Path::new("json"), &repo().join("docs/openapi.yaml")],
    );
    let paths = spec["paths"].as_object().expect("openapi paths");
    let mut out = BTreeSet::new();
    for (path, item) in paths {
        for method in [
            "get", "put", "post", "delete", "options", "head", "patch", "trace",
        ] {
            if item.get(method).is_some() {
                out.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    out
}

#[test]
fn every_route_is_described_in_openapi() {
    let Some(python) = tool("EDEN_CAS_CONTRACT_PYTHON") else {
        return;
    };
    let registered = registered_routes();
    // The scanner must see the surfaces, or an empty set would pass.
    for probe in [
        ("GET", "/healthz"),
        ("POST", "/v0/experiments/{exp}/artifacts"),
        ("HEAD", "/cas/v1/experiments/{exp}/artifacts/{id}"),
        ("POST", "/cas/v1/admin/gc"),
    ] {
        assert!(
            registered.contains(&(probe.0.to_string(), probe.1.to_string())),
            "route scanner missed {probe:?}; found {registered:#?}"
        );
    }
    let documented = documented_routes(&python);
    let undocumented: Vec<_> = registered.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&registered).collect();
    assert!(
        undocumented.is_empty() && unserved.is_empty(),
        "docs/openapi.yaml and src/http disagree.\nregistered but not described: {undocumented:#?}\ndescribed but not registered: {unserved:#?}"
    );
}

// ------------------------------------------------------------------- linters

#[test]
fn openapi_passes_redocly_lint() {
    let Some(redocly) = tool("EDEN_CAS_REDOCLY") else {
        return;
    };
    let out = run(Command::new(redocly)
        .args(["lint", "--config", "docs/redocly.yaml", "docs/openapi.yaml"])
        .env("REDOCLY_TELEMETRY", "off")
        .env("REDOCLY_SUPPRESS_UPDATE_NOTICE", "true"));
    assert!(
        out.status.success(),
        "redocly lint docs/openapi.yaml:\n{}",
        text(&out)
    );
}

#[test]
fn dockerfile_passes_hadolint() {
    let Some(hadolint) = tool("EDEN_CAS_HADOLINT") else {
        return;
    };
    // Every rule at every severity; exceptions are inline, with a reason.
    let out = run(Command::new(hadolint)
        .args(["--no-color", "--failure-threshold", "style"])
        .arg("deploy/docker/Dockerfile"));
    assert!(
        out.status.success(),
        "hadolint deploy/docker/Dockerfile:\n{}",
        text(&out)
    );
}

#[test]
fn compose_file_follows_the_compose_spec() {
    let Some(check) = tool("EDEN_CAS_CHECK_JSONSCHEMA") else {
        return;
    };
    let out = run(Command::new(check).args([
        "--builtin-schema",
        "vendor.compose-spec",
        "deploy/compose.yaml",
    ]));
    assert!(out.status.success(), "deploy/compose.yaml:\n{}", text(&out));
}

// --------------------------------------------------------- Helm values schema

/// Validates `example` merged over the chart's defaults; `Ok` when valid,
/// `Err(output)` when the schema refuses it.
fn check_values(check: &Path, python: &Path, example: &Path, scratch: &Path) -> Result<(), String> {
    let chart = repo().join("deploy/helm/eden-cas");
    let merged = yaml(
        python,
        &[
            Path::new("helm-values"),
            &chart.join("values.yaml"),
            example,
        ],
    );
    let file = scratch.join("values.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&merged).expect("json")).expect("write values");
    let out = run(Command::new(check)
        .arg("--schemafile")
        .arg(chart.join("values.schema.json"))
        .arg(&file));
    let t = text(&out);
    if out.status.success() {
        return Ok(());
    }
    // Refused for the schema's reasons, not because a file did not parse.
    assert!(
        t.contains("Schema validation errors"),
        "check-jsonschema failed on {} for another reason:\n{t}",
        example.display()
    );
    Err(t)
}

fn examples(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("deploy/helm/examples").join(dir))
        .expect("read examples dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no examples in deploy/helm/examples/{dir}"
    );
    files
}

#[test]
fn helm_values_schema_accepts_every_supported_mode_and_refuses_the_rest() {
    let (Some(check), Some(python)) = (
        tool("EDEN_CAS_CHECK_JSONSCHEMA"),
        tool("EDEN_CAS_CONTRACT_PYTHON"),
    ) else {
        return;
    };
    let out = run(Command::new(&check).args([
        "--check-metaschema",
        "deploy/helm/eden-cas/values.schema.json",
    ]));
    assert!(
        out.status.success(),
        "values.schema.json is not a valid schema:\n{}",
        text(&out)
    );

    let scratch = tempfile::tempdir().expect("temp dir");
    let mut wrong = Vec::new();
    for example in examples("valid") {
        if let Err(t) = check_values(&check, &python, &example, scratch.path()) {
            wrong.push(format!("{} was refused:\n{t}", example.display()));
        }
    }
    for example in examples("invalid") {
        if check_values(&check, &python, &example, scratch.path()).is_ok() {
            wrong.push(format!("{} was accepted", example.display()));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

// --------------------------------------------------------------- schemathesis

/// Gives the server something to list and read, so that answers with
/// bodies (artifacts, workers, groups) are checked too, not only 404s.
fn seed(server: &Server, exp: &str) -> String {
    let admin = server.admin_bearer();
    let (worker, bearer) = register_worker_body(
        server,
        exp,
        &json!({"name": "contract-worker", "labels": {"role": "fuzz"}}),
    );
    crate::support::server::create_group(server, exp, Some("readers"), &[worker.as_str()]);
    let url = |p: &str| format!("{}/cas/v1/experiments/{exp}{p}", server.base_url());
    for (who, body) in [
        (&admin, &b"from the admin"[..]),
        (&bearer, &[7u8; 100_000][..]),
    ] {
        let resp = send(
            server
                .client()
                .post(url("/artifacts"))
                .header("Authorization", format!("Bearer {who}"))
                .header("X-Eden-Experiment-Id", exp)
                .header("Content-Type", "application/x-tar")
                .header("X-Eden-Filename", "seed.tar")
                .header("X-Eden-Expires-In", "7d")
                .body(body.to_vec()),
        );
        expect_json(resp, 201);
    }
    bearer
}

fn schemathesis(st: &Path, server: &Server, exp: &str, bearer: &str, who: &str) {
    let out = run(Command::new(st)
        .arg("--no-color")
        .arg("--config-file")
        .arg("tests/contract/schemathesis.toml")
        .args(["run", "docs/openapi.yaml"])
        // Settings and the bearer go through the environment, never argv.
        .env("EDEN_CAS_CONTRACT_URL", server.base_url())
        .env("EDEN_CAS_CONTRACT_EXP", exp)
        .env("EDEN_CAS_CONTRACT_BEARER", bearer)
        .env("NO_PROXY", "127.0.0.1")
        .env("no_proxy", "127.0.0.1")
        .env("SCHEMATHESIS_TELEMETRY", "false"));
    let t = text(&out);
    assert!(
        out.status.success(),
        "schemathesis with the {who} bearer found contract violations:\n{t}\n--- server stderr tail ---\n{}",
        server.stderr_tail()
    );
    eprintln!(
        "schemathesis ({who}): {}",
        t.lines().rev().take(3).collect::<Vec<_>>().join(" | ")
    );
}

#[test]
fn live_server_keeps_the_openapi_contract() {
    let Some(st) = tool("EDEN_CAS_SCHEMATHESIS") else {
        return;
    };
    // Small caps so fuzzed sizes hit the 413 paths quickly.
    let server = Server::start_with(&["--max-artifact-bytes", "1MiB"]);
    let exp = exp_id();
    let worker = seed(&server, &exp);
    schemathesis(&st, &server, &exp, &server.admin_bearer(), "admin");
    schemathesis(&st, &server, &exp, &worker, "worker");
}
