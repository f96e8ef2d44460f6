//! The `eden-cas` client: the `put`, `get`, `ls`, `stat`, `rm`, `grant` and
//! `verify` subcommands, talking to a server's `/cas/v1/` API (`docs/client.md`).
//!
//! Owns the client's error type and its mapping to exit codes, which scripts
//! rely on: 0 ok, 1 usage or local error, 2 the server refused (4xx), 3 server
//! or transport failure (5xx, network), 4 verification mismatch, 5 a local
//! path named by the server already exists (`get` without `--force`). Every error
//! is printed as one line `eden-cas: <message>`; the bearer token never
//! appears in any message.
//!
//! Layout: [`api`] (HTTP calls, problem+json), [`scan`] (local chunking and
//! hashing), [`bundle`] (deterministic tar), [`unbundle`] (safe extraction), [`upload`] (framed batches),
//! [`state`] (resume files), [`put`], [`get`], [`manage`] (ls/stat/rm/grant),
//! [`output`] (text, JSON, progress), [`wire`] (answer shapes), [`local`]
//! (server names and text made safe for local paths and terminals).

pub mod api;
pub mod bundle;
pub mod get;
pub mod local;
pub mod manage;
pub mod output;
pub mod put;
pub mod refs;
pub mod scan;
pub mod state;
pub mod unbundle;
pub mod upload;
pub mod wire;

use std::process::ExitCode;

use crate::cli::{ClientArgs, ClientCommand};

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: bad usage or a local error (file not found, unsupported file type…).
pub const EXIT_LOCAL: u8 = 1;
/// Exit code: the server refused the request (4xx).
pub const EXIT_REFUSED: u8 = 2;
/// Exit code: the server failed (5xx) or could not be reached.
pub const EXIT_SERVER: u8 = 3;
/// Exit code: a BLAKE3 digest did not match.
pub const EXIT_MISMATCH: u8 = 4;
/// Exit code: a local path the server's data names already exists (and
/// `--force` was not given); nothing was changed.
pub const EXIT_EXISTS: u8 = 5;

/// Everything that can make a client command fail.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Bad arguments or settings.
    #[error("{0}")]
    Usage(String),
    /// A local I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the path.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Some other local problem (unsupported file type, unsafe archive entry…).
    #[error("{0}")]
    Local(String),
    /// The local source changed between the hashing pass and the upload.
    #[error("{0} changed while it was being uploaded; run the command again")]
    SourceChanged(String),
    /// The server answered 4xx.
    #[error("{status} {kind}: {detail}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The last segment of the problem `type` (`not-found`), or the reason phrase.
        kind: String,
        /// The problem `detail` (or `title`).
        detail: String,
    },
    /// The server answered 5xx.
    #[error("server error {status}: {detail}")]
    Server {
        /// HTTP status.
        status: u16,
        /// The problem `detail` (or `title`).
        detail: String,
    },
    /// The request never got an answer (connection refused, reset, timeout).
    #[error("cannot reach the server: {0}")]
    Transport(String),
    /// The server answered something this client cannot understand.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    /// A digest did not match.
    #[error("{0}")]
    Mismatch(String),
    /// A path named by server data already exists; nothing was replaced.
    #[error("{0}")]
    Exists(String),
}

impl ClientError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Usage(_)
            | ClientError::Io { .. }
            | ClientError::Local(_)
            | ClientError::SourceChanged(_) => EXIT_LOCAL,
            ClientError::Refused { .. } => EXIT_REFUSED,
            ClientError::Server { .. } | ClientError::Transport(_) | ClientError::Protocol(_) => {
                EXIT_SERVER
            }
            ClientError::Mismatch(_) => EXIT_MISMATCH,
            ClientError::Exists(_) => EXIT_EXISTS,
        }
    }

    /// An [`ClientError::Io`] with its context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ClientError::Io {
            context: context.into(),
            source,
        }
    }

    /// Whether this is a 4xx with the given status.
    pub fn is_status(&self, code: u16) -> bool {
        matches!(self, ClientError::Refused { status, .. } if *status == code)
    }

    /// Whether this is a 4xx whose problem type ends in `kind`.
    pub fn is_kind(&self, want: &str) -> bool {
        matches!(self, ClientError::Refused { kind, .. } if kind == want)
    }
}

/// Result of client operations.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// Runs one client subcommand on a fresh tokio runtime, prints any error as
/// one line on stderr, and returns the exit code.
pub fn run(command: ClientCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("eden-cas: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_LOCAL);
        }
    };
    let result = runtime.block_on(dispatch(command));
    // Do not wait for blocking tasks left behind by an error (a producer
    // blocked on a full channel, a stdin read): the command is over.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(e) => {
            // Messages may carry server text (problem details, names).
            eprintln!("eden-cas: {}", local::display_safe(&e.to_string()));
            ExitCode::from(e.exit_code())
        }
    }
}

async fn dispatch(command: ClientCommand) -> Result<()> {
    match command {
        ClientCommand::Put(a) => put::run(connect(&a.client)?, &a).await,
        ClientCommand::Get(a) => get::run(connect(&a.client)?, &a).await,
        ClientCommand::Verify(a) => get::verify(connect(&a.client)?, &a).await,
        ClientCommand::Ls(a) => manage::ls(connect(&a.client)?, &a).await,
        ClientCommand::Stat(a) => manage::stat(connect(&a.client)?, &a).await,
        ClientCommand::Rm(a) => manage::rm(connect(&a.client)?, &a).await,
        ClientCommand::Grant(a) => manage::grant(connect(&a.client)?, &a).await,
        ClientCommand::Ref(c) => refs::run(c).await,
    }
}

/// Builds the API handle from the connection flags (or their environment variables).
pub(crate) fn connect(args: &ClientArgs) -> Result<api::Api> {
    let url = args
        .url
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ClientError::Usage("no server: set EDEN_CAS_URL or pass --url".into()))?;
    let experiment = args
        .experiment
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            ClientError::Usage("no experiment: set EDEN_CAS_EXPERIMENT or pass --experiment".into())
        })?;
    let token = args
        .token
        .as_ref()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ClientError::Usage("no bearer token: set EDEN_CAS_TOKEN (<principal>:<secret>)".into())
        })?;
    api::Api::new(url, experiment, token)
}

/// The artifact a command names: `ref:NAME` is looked up (the reference's
/// current target), anything else goes through [`parse_artifact_ref`].
///
/// # Errors
/// A usage error for a malformed target; the server's 404 for a reference
/// that does not exist or that the caller may not see.
pub async fn resolve_target(api: &api::Api, target: &str) -> Result<String> {
    let Some(name) = target.strip_prefix("ref:") else {
        return parse_artifact_ref(target);
    };
    let r = api.get_ref(name).await?;
    r["target"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| ClientError::Protocol("a reference without a target".into()))
}

/// Parses `eden://artifacts/<id>` or a bare 32-hex id into the id.
pub fn parse_artifact_ref(s: &str) -> Result<String> {
    let id = s.strip_prefix("eden://artifacts/").unwrap_or(s);
    if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id.to_ascii_lowercase())
    } else {
        Err(ClientError::Usage(format!(
            "{s:?} is not an artifact id (32 hex characters) or eden://artifacts/<id> URI"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_refs() {
        let id = "0193c2a5b1e04c7f8d2e9a1b3c4d5e6f";
        assert_eq!(parse_artifact_ref(id).unwrap(), id);
        assert_eq!(
            parse_artifact_ref(&format!("eden://artifacts/{id}")).unwrap(),
            id
        );
        assert_eq!(
            parse_artifact_ref(&id.to_ascii_uppercase()).unwrap(),
            id,
            "hex case does not matter"
        );
        assert!(parse_artifact_ref("eden://artifacts/xyz").is_err());
        assert!(parse_artifact_ref(&format!("{id}0")).is_err());
        assert!(parse_artifact_ref("").is_err());
    }

    #[test]
    fn exit_codes() {
        let refused = ClientError::Refused {
            status: 404,
            kind: "not-found".into(),
            detail: "no such artifact".into(),
        };
        assert_eq!(refused.exit_code(), EXIT_REFUSED);
        assert_eq!(refused.to_string(), "404 not-found: no such artifact");
        assert!(refused.is_status(404) && refused.is_kind("not-found"));
        assert_eq!(ClientError::Transport("x".into()).exit_code(), EXIT_SERVER);
        assert_eq!(ClientError::Mismatch("x".into()).exit_code(), EXIT_MISMATCH);
        assert_eq!(ClientError::Usage("x".into()).exit_code(), EXIT_LOCAL);
    }
}
