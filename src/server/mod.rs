//! The control plane: HTTP API, jobs, node supervision.

mod admin;
mod auth;
mod connectivity;
mod endpoints;
mod error;
mod extract;
mod internal;
mod jobs;
mod keys;
mod metrics;
mod openapi;
mod render;
mod replication;
mod routes;
mod serve;
mod source_task;
mod supervisor;
mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use tracing::{info, warn};

use crate::config::{AuthMode, Config};
use crate::crypto::{self, MASTER_KEY_ENV};
use crate::store::{Instance, Store, now_ms};

pub use error::ApiError;

/// Shared state of the request handlers and background loops.
pub struct AppState {
    pub config: Config,
    pub store: Store,
    /// URL the nodes use to reach this server.
    pub public_url: String,
    pub data_dir: PathBuf,
    pub hostname: String,
}

pub type SharedState = Arc<AppState>;

/// Arguments of `weir server`.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Directory for the store, the local buckets and node logs [env: WEIR_DATA_DIR]
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on, such as 127.0.0.1:8780 [env: WEIR_LISTEN]
    #[arg(long)]
    pub listen: Option<String>,
    /// TOML configuration file
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Serve the API without authentication, for local development only
    /// (the same as `server.auth = "none"`)
    #[arg(long)]
    pub no_auth: bool,
}

/// Largest body a node may send, in bytes.
const NODE_BODY_LIMIT: usize = 16 << 20;

/// Returns the time a client has to send a request's headers, and then its body.
fn read_timeout(config: &Config) -> Duration {
    Duration::from_secs(config.server.read_timeout_s.max(1))
}

/// Builds the router of every endpoint, from the route table in [`endpoints`].
pub fn app(state: SharedState) -> Router {
    // API bodies are bounded by `server.max_body_bytes`; node heartbeats
    // carry one report per task and get their own bound.
    let timeout = read_timeout(&state.config);
    let api_body = extract::BodyBounds {
        max_bytes: state.config.server.max_body_bytes,
        timeout,
    };
    let node_body = extract::BodyBounds {
        max_bytes: NODE_BODY_LIMIT,
        timeout,
    };
    let signed = endpoints::router(endpoints::Auth::Signature)
        .layer(DefaultBodyLimit::max(api_body.max_bytes))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            auth::require_signature,
        ))
        .layer(middleware::from_fn_with_state(
            api_body,
            extract::buffer_body,
        ));
    let nodes = endpoints::router(endpoints::Auth::NodeToken)
        .layer(DefaultBodyLimit::max(node_body.max_bytes))
        .layer(middleware::from_fn_with_state(
            node_body,
            extract::buffer_body,
        ));
    Router::new()
        .merge(signed)
        .merge(nodes)
        .merge(endpoints::router(endpoints::Auth::None))
        .fallback(routes::unknown_path)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(middleware::from_fn(extract::json_errors))
        .layer(middleware::from_fn(request_id))
        .with_state(state)
}

/// Gives every response an `X-Request-Id`, echoing the client's when it sent one.
async fn request_id(request: Request<axum::body::Body>, next: Next) -> Response {
    let header = HeaderName::from_static("x-request-id");
    let id = request
        .headers()
        .get(&header)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let mut response = next.run(request).await;
    let status = response.status();
    if status.is_server_error() {
        warn!(request_id = %id, %method, %path, status = status.as_u16(), "Request failed.");
    } else {
        tracing::debug!(request_id = %id, %method, %path, status = status.as_u16(), "Request served.");
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(header, value);
    }
    response
}

/// Runs `weir server` until SIGINT or SIGTERM.
pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let mut config = Config::load(args.config.as_deref())?;
    config.apply_env(|name| std::env::var(name).ok());
    if let Some(dir) = args.data_dir {
        config.server.data_dir = dir;
    }
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    if args.no_auth {
        config.server.auth = AuthMode::None;
    }
    config.validate()?;
    let listener = tokio::net::TcpListener::bind(&config.server.listen)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "listening on {:?} failed: {e}; give --listen (or WEIR_LISTEN) as HOST:PORT, such as 127.0.0.1:8780",
                config.server.listen
            )
        })?;
    std::fs::create_dir_all(&config.server.data_dir).map_err(|e| {
        anyhow::anyhow!(
            "creating data directory {} failed: {e}",
            config.server.data_dir.display()
        )
    })?;
    // Child nodes get absolute paths of the local buckets.
    let data_dir = std::fs::canonicalize(&config.server.data_dir)?;
    let env_key = std::env::var(MASTER_KEY_ENV).ok();
    let store = Store::open(&data_dir, |has_secrets| {
        crypto::load_master_key(
            env_key.as_deref(),
            config.server.master_key_file.as_deref(),
            &data_dir,
            has_secrets,
        )
    })?;
    seed(&config, &store, &data_dir)?;
    let bound: SocketAddr = listener.local_addr()?;
    if config.server.auth == AuthMode::None {
        warn!(
            listen = %bound,
            "Authentication is disabled (server.auth = \"none\"): anyone who can reach this \
             address can read and change every project. Use it only for local development."
        );
    }
    let public_url = config.public_url(bound);
    let state = Arc::new(AppState {
        public_url,
        data_dir: data_dir.clone(),
        hostname: hostname(),
        store,
        config,
    });
    info!(listen = %bound, data_dir = %data_dir.display(), public_url = %state.public_url, "Server started.");
    let supervisor = supervisor::Supervisor::start(Arc::clone(&state));
    jobs::start(Arc::clone(&state));
    jobs::start_group_cleanup(Arc::clone(&state));
    serve::serve(
        listener,
        app(Arc::clone(&state)),
        read_timeout(&state.config),
        shutdown_signal(),
    )
    .await?;
    info!("Server stopping; stopping child nodes.");
    supervisor.shutdown().await;
    info!("Server stopped.");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string())
}

/// Loads the keys and instances of the configuration into the store, and
/// creates a first key when there is none at all.
fn seed(config: &Config, store: &Store, data_dir: &std::path::Path) -> anyhow::Result<()> {
    for key in &config.keys {
        store.insert_key(
            &key.access_key,
            &key.secret_key,
            &key.project_id,
            key.admin,
            &key.description,
        )?;
    }
    for instance in &config.instances {
        let id = instance.id.clone().unwrap_or_else(|| {
            uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, instance.name.as_bytes()).to_string()
        });
        let inserted = store.insert_instance(&Instance {
            id: id.clone(),
            project_id: instance.project_id.clone(),
            name: instance.name.clone(),
            bootstrap_servers: instance.bootstrap_servers.clone(),
            specification: instance.specification.clone(),
            broker_num: instance.broker_num,
            security: instance.security(),
            status: "RUNNING".to_string(),
            created_at: now_ms(),
        })?;
        if inserted {
            info!(instance_id = %id, name = %instance.name, "Instance registered from the configuration.");
        }
    }
    if store.key_count()? == 0 {
        let project_id = uuid::Uuid::new_v4().simple().to_string();
        let access_key = random_token(20).to_uppercase();
        let secret_key = random_token(40);
        store.insert_key(&access_key, &secret_key, &project_id, true, "initial key")?;
        let path = data_dir.join("initial-key.json");
        let body = serde_json::json!({
            "access_key": access_key,
            "secret_key": secret_key,
            "project_id": project_id,
            "admin": true,
        });
        write_private(&path, &serde_json::to_vec_pretty(&body)?)?;
        info!(path = %path.display(), %project_id, %access_key, "Created a first admin API key; its secret is in the file.");
    }
    Ok(())
}

/// Returns `len` random characters from letters and digits.
pub fn random_token(len: usize) -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(CHARS[rng.random_range(0..CHARS.len())]))
        .collect()
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| anyhow::anyhow!("writing {} failed: {e}", path.display()))?;
    file.write_all(bytes)?;
    Ok(())
}
