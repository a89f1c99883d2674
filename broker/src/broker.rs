//! The broker's life: start (data dir, keys, store, listeners), serve, stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::auth::ca::{Ca, CaError};
use crate::auth::sealed::SealKey;
use crate::auth::tokens::TokenKeys;
use crate::clock::now_ms;
use crate::config::Settings;
use crate::datadir::{DataDir, DataDirError};
use crate::metrics::Metrics;
use crate::quic::{self, QuicError};
use crate::state::{AppState, Shared};
use crate::store::{redact_url, Store, StoreError};

pub const ADMIN_TOKEN_FILE: &str = "admin-token";
/// Keys the QUIC stateless resets, so they stay valid across restarts.
pub const QUIC_RESET_KEY_FILE: &str = "quic-reset-key";

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error("cannot open the store at {url}: {source}")]
    Store { url: String, source: StoreError },
    #[error("cannot listen on TCP {addr} for the API: {source}{hint}", hint = quic::in_use_hint(source, "--api-listen"))]
    BindApi {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot listen on TCP {addr} for metrics_listen: {source}")]
    BindMetrics {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Quic(#[from] QuicError),
    #[error("API TLS: {0}")]
    Tls(String),
    #[error(transparent)]
    Certificate(#[from] crate::tls::TlsError),
}

/// A broker whose listeners are bound and whose store is ready.
pub struct Broker {
    shared: AppState,
    api_listener: TcpListener,
    api_tls: TlsAcceptor,
    endpoint: quinn::Endpoint,
    api_addr: SocketAddr,
    quic_addr: SocketAddr,
    /// The plain-HTTP `/metrics` listener, if configured.
    metrics: Option<(TcpListener, SocketAddr)>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("api", &self.api_addr)
            .field("quic", &self.quic_addr)
            .finish()
    }
}

fn local_hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

fn api_tls(slot: Arc<crate::tls::CertSlot>) -> Result<TlsAcceptor, StartError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StartError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(slot);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

impl Broker {
    /// Binds both listeners, then prepares the data dir (first start makes
    /// the CA, keys and admin token) and opens and migrates the store. The
    /// listeners come first so that a port in use is reported before
    /// anything is written: a fresh data dir is not created for a broker
    /// that cannot run.
    pub async fn start(settings: Settings) -> Result<Self, StartError> {
        let api_listener = TcpListener::bind(settings.api_listen)
            .await
            .map_err(|source| StartError::BindApi {
                addr: settings.api_listen,
                source,
            })?;
        let api_addr = api_listener
            .local_addr()
            .map_err(|source| StartError::BindApi {
                addr: settings.api_listen,
                source,
            })?;
        let quic_socket = quic::bind_socket(settings.quic_listen)?;
        let metrics = match settings.metrics_listen {
            None => None,
            Some(addr) => {
                let bind_err = |source| StartError::BindMetrics { addr, source };
                let listener = TcpListener::bind(addr).await.map_err(bind_err)?;
                let bound = listener.local_addr().map_err(bind_err)?;
                if !bound.ip().is_loopback() {
                    tracing::warn!(
                        addr = %bound,
                        "metrics_listen is not a loopback address: anyone who can reach it reads /metrics without a token"
                    );
                }
                Some((listener, bound))
            }
        };

        let dir = DataDir::open(&settings.data_dir)?;
        let ca = Ca::load_or_create(&dir)?;
        let token_keys = TokenKeys::load_or_create(&dir)?;
        let seal = SealKey::load_or_create(&dir)?;
        let (admin_token, created) = dir.read_or_create(ADMIN_TOKEN_FILE, || {
            Ok::<_, DataDirError>(format!("{}\n", crate::secrets::new_token("lyt_")).into_bytes())
        })?;
        if created {
            tracing::info!(path = %dir.file(ADMIN_TOKEN_FILE).display(), "wrote the bootstrap admin token");
        }
        let admin_token = String::from_utf8_lossy(&admin_token).trim().to_owned();

        if settings.database_url.is_none() {
            // SQLite gives its -wal and -shm files the database file's mode:
            // create it 0600 first, since it holds password hashes.
            let db = dir.file("lanyard.db");
            if !db.exists() {
                use std::os::unix::fs::OpenOptionsExt;
                let _ = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&db);
            }
        }
        let url = settings.database_url();
        let store_err = |source| StartError::Store {
            url: redact_url(&url),
            source,
        };
        let store = Store::connect(&url).await.map_err(store_err)?;
        let applied = store.migrate().await.map_err(store_err)?;
        if applied > 0 {
            tracing::info!(applied, "applied store migrations");
        }
        store
            .api_token_ensure_bootstrap(
                &crate::secrets::hash_secret(admin_token.as_bytes()),
                now_ms(),
            )
            .await
            .map_err(store_err)?;

        let mut names = settings.server_names.clone();
        names.extend(local_hostname());
        for host in settings
            .public_addrs
            .iter()
            .filter_map(|a| a.rsplit_once(':'))
            .map(|(h, _)| h)
        {
            names.push(host.trim_matches(['[', ']']).to_owned());
        }
        let certs = crate::tls::ServerCerts::new(
            &ca,
            names,
            settings.server_cert_ttl,
            settings.tls.clone(),
        )?;
        let api_tls = api_tls(certs.api())?;

        let (reset_key, _) = dir.read_or_create(QUIC_RESET_KEY_FILE, || {
            Ok::<_, DataDirError>(crate::secrets::random_bytes::<32>().to_vec())
        })?;
        let endpoint = quic::endpoint(
            quic_socket,
            quic::server_config(
                certs.quic(),
                ca.cert_der(),
                settings.streams_per_agent,
                settings.quic_idle_timeout,
            )?,
            &reset_key,
        )?;
        let quic_addr = endpoint.local_addr().map_err(|source| QuicError::Bind {
            addr: settings.quic_listen,
            source,
        })?;

        let public_quic_addr = match settings.public_addrs.first() {
            Some(p) => p.clone(),
            None if quic_addr.ip().is_unspecified() => {
                let addr = format!("127.0.0.1:{}", quic_addr.port());
                tracing::warn!(
                    %addr,
                    "no --public-addr: enrolment codes will send agents to {addr}; set --public-addr to the address laptops use"
                );
                addr
            }
            None => quic_addr.to_string(),
        };
        let requires_allocation = settings.managed_requires_allocation;
        let settings_node = settings.node.clone().unwrap_or_else(|| {
            format!(
                "{}:{}",
                local_hostname().unwrap_or_else(|| "broker".into()),
                quic_addr.port()
            )
        });
        let checkpoints = crate::checkpoint::Checkpoints::open(
            &dir,
            settings
                .checkpoint_file
                .clone()
                .unwrap_or_else(|| dir.file(crate::checkpoint::DEFAULT_FILE)),
            &settings_node,
        )?;
        let settings_public = settings.public_addrs.clone();
        let max_age = settings.rules_max_age;
        let access_ttl = settings.access_ttl;
        let live = std::sync::RwLock::new(crate::reload::Live::of(&settings));
        let oidc = settings.oidc.clone().map(crate::auth::oidc::Oidc::new);
        let shared = Arc::new(Shared {
            oidc,
            live,
            certs,
            store,
            ca,
            token_keys: std::sync::RwLock::new(Arc::new(token_keys)),
            seal,
            metrics: Metrics::default(),
            settings,
            public_addrs: if settings_public.is_empty() {
                vec![public_quic_addr.clone()]
            } else {
                settings_public
            },
            agent_addrs: Default::default(),
            public_quic_addr,
            started_at_secs: now_ms() / 1000,
            throttle: Default::default(),
            failures: Default::default(),
            policy: crate::policy::snapshot::PolicyCache::new(requires_allocation)
                .with_access_ttl(access_ttl)
                .with_max_age(max_age),
            sessions: Default::default(),
            quic: endpoint.clone(),
            node: settings_node,
            load: Default::default(),
            checkpoints,
        });
        // This node's sessions from an earlier run ended with it.
        let ended = shared
            .store
            .node_start(
                &shared.node,
                &shared.public_quic_addr,
                &api_addr.to_string(),
                now_ms(),
            )
            .await
            .map_err(store_err)?;
        if ended > 0 {
            tracing::info!(
                sessions = ended,
                "recorded the sessions of this node's last run as ended"
            );
        }
        shared.refresh_agent_addrs(now_ms()).await;
        // The rules must be loaded before the first agent is served.
        shared
            .policy
            .reload(&shared.store, now_ms())
            .await
            .map_err(store_err)?;
        Ok(Self {
            shared,
            api_listener,
            api_tls,
            endpoint,
            api_addr,
            quic_addr,
            metrics,
        })
    }

    /// The plain-HTTP `/metrics` listener's address, if configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(_, a)| *a)
    }

    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    pub fn quic_addr(&self) -> SocketAddr {
        self.quic_addr
    }

    pub fn state(&self) -> &AppState {
        &self.shared
    }

    pub fn admin_token_path(&self) -> std::path::PathBuf {
        self.shared.settings.data_dir.join(ADMIN_TOKEN_FILE)
    }

    /// The one line printed when the broker is ready.
    pub fn ready_line(&self) -> String {
        let metrics = self
            .metrics_addr()
            .map(|a| format!(" metrics=http://{a}/metrics"))
            .unwrap_or_default();
        format!(
            "lanyard-broker ready api=https://{} quic={} ca=sha256:{}{metrics}",
            self.api_addr,
            self.quic_addr,
            self.shared.ca.fingerprint_hex()
        )
    }

    /// Serves until `shutdown` resolves, then stops accepting and drains
    /// open work for up to the grace period (less if it finishes sooner).
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let grace = self.shared.settings.grace_period;
        let (stop_tx, stop_rx) = watch::channel(false);
        let api = tokio::spawn(crate::api::serve(
            self.api_listener,
            self.api_tls,
            self.shared.clone(),
            stop_rx.clone(),
            grace,
        ));
        let quic = tokio::spawn(quic::serve(
            self.endpoint.clone(),
            self.shared.clone(),
            stop_rx.clone(),
        ));
        let metrics = self.metrics.map(|(listener, _)| {
            tokio::spawn(crate::api::metrics_http::serve(
                listener,
                self.shared.clone(),
                stop_rx.clone(),
            ))
        });
        let policy = {
            let (shared, stop) = (self.shared.clone(), stop_rx.clone());
            tokio::spawn(async move { shared.policy.run(&shared.store, stop).await })
        };
        let failures = {
            let (shared, stop) = (self.shared.clone(), stop_rx.clone());
            tokio::spawn(async move { shared.failures.run(&shared.store, stop).await })
        };
        let heartbeat = {
            let (shared, stop) = (self.shared.clone(), stop_rx.clone());
            tokio::spawn(async move { heartbeat(&shared, stop).await })
        };
        let checkpoints = {
            let (shared, stop) = (self.shared.clone(), stop_rx.clone());
            tokio::spawn(async move { checkpoint(&shared, stop).await })
        };
        let listener = {
            let (shared, stop) = (self.shared.clone(), stop_rx.clone());
            tokio::spawn(async move {
                shared
                    .store
                    .listen_access(|| shared.policy.trigger(), stop)
                    .await
            })
        };
        let renewal = {
            let (shared, stop) = (self.shared.clone(), stop_rx.clone());
            tokio::spawn(async move { crate::tls::renew_at_half_life(&shared, stop).await })
        };
        let load = {
            let shared = self.shared.clone();
            tokio::spawn(async move { crate::load::run(shared.load_sources(), stop_rx).await })
        };
        shutdown.await;
        tracing::info!(grace = %humantime::format_duration(grace), "stopping: no new connections; draining");
        let _ = stop_tx.send(true);
        let _ = tokio::time::timeout(grace, quic).await;
        let _ = policy.await;
        let _ = load.await;
        let _ = failures.await;
        let _ = heartbeat.await;
        let _ = checkpoints.await;
        let _ = renewal.await;
        let _ = listener.await;
        self.endpoint.close(
            lanyard_proto::close::SHUTDOWN.into(),
            b"the broker is stopping",
        );
        let _ = tokio::time::timeout(grace, self.endpoint.wait_idle()).await;
        let _ = api.await;
        if let Some(m) = metrics {
            let _ = m.await;
        }
        self.shared.store.close().await;
        tracing::info!("stopped");
    }
}

/// How often a node says it is alive, with its agents and streams.
pub const HEARTBEAT: Duration = Duration::from_secs(5);

/// How often run-out rows are pruned (and once at start).
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Keeps this node's row in the store fresh until `shutdown`, ends the
/// sessions of nodes that have gone silent, and prunes what ran out.
async fn heartbeat(state: &crate::state::Shared, mut shutdown: watch::Receiver<bool>) {
    let mut next_prune = tokio::time::Instant::now();
    loop {
        if tokio::time::Instant::now() >= next_prune {
            next_prune += PRUNE_EVERY;
            match tokio::time::timeout(PRUNE_EVERY / 4, state.store.prune_ended(now_ms())).await {
                Ok(Ok(p)) => tracing::debug!(?p, "pruned rows that ran out"),
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot prune rows that ran out"),
                Err(_) => tracing::warn!("pruning rows that ran out took too long"),
            }
        }
        let beat = state.store.node_heartbeat(
            &state.node,
            state.sessions.len() as u64,
            state.sessions.open_streams(),
            now_ms(),
        );
        match tokio::time::timeout(HEARTBEAT, beat).await {
            Ok(Ok(0)) => {}
            Ok(Ok(ended)) => {
                tracing::info!(
                    sessions = ended,
                    "ended the sessions of a node that went silent"
                )
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot record this node's heartbeat"),
            Err(_) => tracing::warn!("the store did not take this node's heartbeat in time"),
        }
        let _ = tokio::time::timeout(HEARTBEAT, state.refresh_agent_addrs(now_ms())).await;
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(HEARTBEAT) => {}
        }
    }
}

/// Signs the audit chain's head into the checkpoint file at every interval
/// (when it moved), and once more on the way out. At start and before each
/// signature a quick check of the chain against the last checkpoint sets
/// `lanyard_audit_chain_ok`; a chain that fails it is not signed.
async fn checkpoint(state: &crate::state::Shared, mut shutdown: watch::Receiver<bool>) {
    let mut last_problem = None;
    quick_check(state, &mut last_problem).await;
    loop {
        let stopping = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => true,
            _ = tokio::time::sleep(state.live().checkpoint_interval) => false,
        };
        if quick_check(state, &mut last_problem).await == Some(false) {
            tracing::warn!("not signing an audit checkpoint: the chain fails its check");
        } else {
            match tokio::time::timeout(HEARTBEAT, state.store.audit_head()).await {
                Ok(Ok((seq, hash))) => {
                    if let Err(e) = state.checkpoints.record(seq, &hash, now_ms()) {
                        tracing::error!(error = %e, "cannot write an audit checkpoint");
                    }
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot read the audit chain head"),
                Err(_) => tracing::warn!("the store did not give the audit chain head in time"),
            }
        }
        if stopping {
            return;
        }
    }
}

/// The quick check of the audit chain (the head matches the last row, the
/// row last signed still has its hash), into `lanyard_audit_chain_ok`:
/// whether it passed, or `None` if the store did not answer. A problem is
/// logged when it is first seen or changes.
async fn quick_check(
    state: &crate::state::Shared,
    last_problem: &mut Option<String>,
) -> Option<bool> {
    let signed = state.checkpoints.last_signed();
    let check = state
        .store
        .audit_quick_check(signed.as_ref().map(|(seq, hash)| (*seq, hash.as_str())));
    match tokio::time::timeout(HEARTBEAT, check).await {
        Ok(Ok(problem)) => {
            if let Some(p) = &problem {
                if last_problem.as_ref() != Some(p) {
                    tracing::error!(problem = %p, "the audit chain fails its check; run `lanyard audit verify`");
                }
            } else if last_problem.is_some() {
                tracing::info!("the audit chain passes its check again");
            }
            let ok = problem.is_none();
            *last_problem = problem;
            state
                .metrics
                .audit_checked(crate::metrics::AuditCheck::Quick, ok, now_ms() / 1000);
            Some(ok)
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot check the audit chain");
            None
        }
        Err(_) => {
            tracing::warn!("the store did not answer the audit chain check in time");
            None
        }
    }
}
