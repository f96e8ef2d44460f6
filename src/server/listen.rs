//! The listeners of `serve`: the HTTP/1.1 service of each worker (the app
//! wrapped in the request observer and the listener split, behind the
//! `Expect: 100-continue` judge), over plain TCP or rustls (`tls.rs`), and
//! the certificate reload on SIGHUP.

use actix_web::dev::AppConfig;
use actix_web::{App, web};

use super::ServerError;
use crate::config::Config;
use crate::http::split::ListenerRole;
use crate::http::{self, AppState};
use crate::tls::CertReloader;

/// After answering a request whose body was not read to its end, the
/// connection lingers this long discarding what is still in flight (so a
/// client that is still sending can read the answer), then closes.
const LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// The HTTP/1.1 service of one worker, before its transport is chosen
/// (`.tcp()` or `.rustls_0_23(..)`): the app, wrapped in the request
/// observer (`http/observe.rs`), behind the `Expect: 100-continue` judge
/// (`http/expect.rs`), which `HttpServer` cannot install. A macro because
/// the service's type, full of closures, cannot be named.
macro_rules! http_service {
    ($state:expr, $addr:expr, $role:expr) => {{
        use actix_service::{IntoServiceFactory, fn_service, map_config};
        let state: AppState = $state;
        let judge = state.clone();
        let observe = http::observe::Observe::new(state.metrics.http.clone());
        let app = App::new()
            .app_data(web::Data::new(state))
            .app_data(web::Data::new($role))
            .wrap(actix_web::middleware::from_fn(http::split::split))
            .wrap(observe)
            .configure(http::configure)
            .into_factory();
        actix_http::HttpService::build()
            .keep_alive(actix_http::KeepAlive::Timeout(
                std::time::Duration::from_secs(5),
            ))
            .client_request_timeout(std::time::Duration::from_secs(5))
            .client_disconnect_timeout(LINGER)
            .local_addr($addr)
            .expect(fn_service(move |req: actix_http::Request| {
                let judge = judge.clone();
                async move { http::expect::check(&judge, req).await }
            }))
            .finish(map_config(app, move |_| AppConfig::default()))
    }};
}

/// Adds `listener`, serving the routes of `role`, over TLS when `tls` is
/// given.
pub(super) fn add_listener(
    builder: actix_server::ServerBuilder,
    name: &str,
    listener: std::net::TcpListener,
    state: AppState,
    role: ListenerRole,
    tls: Option<rustls::ServerConfig>,
) -> std::io::Result<actix_server::ServerBuilder> {
    let addr = listener.local_addr()?;
    match tls {
        Some(tls) => builder.listen(name, listener, move || {
            http_service!(state.clone(), addr, role).rustls_0_23(tls.clone())
        }),
        None => builder.listen(name, listener, move || {
            http_service!(state.clone(), addr, role).tcp()
        }),
    }
}

/// The listener's TLS (`tls-cert`, `tls-key`), `None` for plain HTTP.
pub(super) fn tls(config: &Config) -> Result<Option<std::sync::Arc<CertReloader>>, ServerError> {
    Ok(CertReloader::from_settings(
        config.tls_cert.as_deref(),
        config.tls_key.as_deref(),
    )?)
}

/// On SIGHUP, reloads the certificate and key; the listener and open
/// connections stay, new handshakes get the new pair. A failed reload
/// keeps the previous pair.
pub(super) fn reload_on_sighup(certs: std::sync::Arc<CertReloader>) -> std::io::Result<()> {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match certs.reload() {
                Ok(()) => tracing::info!("SIGHUP: TLS certificate and key reloaded"),
                Err(e) => tracing::error!(
                    error = %e,
                    "SIGHUP: TLS certificate NOT reloaded; the previous one is still served"
                ),
            }
        }
    });
    Ok(())
}
