//! eden-cas binary: parse CLI → init tracing → load config → dispatch.
//! Startup errors are one line naming the setting to fix, and exit code 1.

use std::process::ExitCode;

use clap::Parser as _;
use eden_cas::cli::{Cli, Command};
use eden_cas::config::explain_value_error;
use eden_cas::logging::LogFormat;
use eden_cas::maintenance;

/// `log-format` and `otlp-endpoint` of a command that takes the server's
/// settings (resolved once more by the command itself, which reports a bad
/// setting); text and no export for the client commands.
fn log_settings(command: &Command) -> (LogFormat, Option<String>) {
    let args = match command {
        Command::Serve(a)
        | Command::CheckConfig(a)
        | Command::Reindex(a)
        | Command::Backup(a)
        | Command::Migrate(a) => a,
        Command::Gc(a) => &a.serve,
        Command::Fsck(a) => &a.serve,
        Command::Restore(a) => &a.serve,
        Command::Audit(eden_cas::cli::AuditCommand::Export(a)) => &a.serve,
        Command::Client(_) => return (LogFormat::Text, None),
    };
    args.load()
        .map_or((LogFormat::Text, None), |c| (c.log_format, c.otlp_endpoint))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // A bad setting value: one line naming the setting and its source.
            let argv: Vec<String> = std::env::args_os()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            let given = |flag: &str| {
                argv.iter().any(|a| {
                    a.strip_prefix(flag)
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('='))
                })
            };
            if let Some(line) = explain_value_error(&e, &given) {
                eprintln!("eden-cas: {line}");
                return ExitCode::FAILURE;
            }
            let _ = e.print();
            // Usage errors exit 1: for client commands 2 means "server refused".
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let (format, otlp) = log_settings(&cli.command);
    // Held to the end of main: dropping it flushes exported spans.
    let _log = eden_cas::logging::init(format, otlp.as_deref());
    let result: anyhow::Result<()> = match cli.command {
        Command::Client(command) => return eden_cas::client::run(command),
        Command::Gc(args) => {
            return maintenance::run(
                &args.serve,
                maintenance::Task::Gc {
                    dry_run: args.dry_run,
                    json: args.json,
                },
            );
        }
        Command::Fsck(args) => {
            return maintenance::run(
                &args.serve,
                maintenance::Task::Fsck {
                    deep: args.deep,
                    json: args.json,
                },
            );
        }
        Command::Reindex(args) => return maintenance::run(&args, maintenance::Task::Reindex),
        Command::Backup(args) => return maintenance::run(&args, maintenance::Task::Backup),
        Command::Migrate(args) => return maintenance::migrate(&args),
        Command::Audit(eden_cas::cli::AuditCommand::Export(args)) => {
            return maintenance::audit_export(&args);
        }
        Command::Restore(args) => {
            return maintenance::run(&args.serve, maintenance::Task::Restore { from: args.from });
        }
        Command::Serve(args) => args.load().map_err(anyhow::Error::from).and_then(|config| {
            actix_web::rt::System::new()
                .block_on(eden_cas::server::serve(config))
                .map_err(anyhow::Error::from)
        }),
        Command::CheckConfig(args) => args.load().map_err(anyhow::Error::from).and_then(|config| {
            let report =
                actix_web::rt::System::new().block_on(eden_cas::server::check_config(&config))?;
            print!("{report}");
            Ok(())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eden-cas: {e:#}");
            ExitCode::FAILURE
        }
    }
}
