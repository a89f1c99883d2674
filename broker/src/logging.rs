//! The broker's log: text or one JSON object per line
//! (`LANYARD_LOG_FORMAT=json`), on stderr. The `log` records of rustls (and
//! of any other library that uses `log`) are bridged into it, so a log
//! shipper reads one stream. The filter is `LANYARD_LOG`, else the config
//! file's `log_level` (changed on SIGHUP), else the default.

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{reload, EnvFilter, Registry};

pub const DEFAULT_FILTER: &str = "info,sqlx=warn,quinn=warn,rustls=warn";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    /// `LANYARD_LOG_FORMAT`: `text` (the default) or `json`.
    pub fn from_env() -> Result<Self, String> {
        match std::env::var("LANYARD_LOG_FORMAT") {
            Err(_) => Ok(Self::Text),
            Ok(v) => match v.trim().to_ascii_lowercase().as_str() {
                "" | "text" => Ok(Self::Text),
                "json" => Ok(Self::Json),
                _ => Err(format!(
                    "LANYARD_LOG_FORMAT is {v:?}; use text (the default) or json"
                )),
            },
        }
    }
}

/// The installed log filter, which the config file's `log_level` may
/// change unless `LANYARD_LOG` set it.
pub struct LogControl {
    handle: reload::Handle<EnvFilter, Registry>,
    from_env: bool,
    current: Option<String>,
}

impl std::fmt::Debug for LogControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogControl")
            .field("from_env", &self.from_env)
            .field("current", &self.current)
            .finish()
    }
}

impl LogControl {
    /// Applies a config file's `log_level` (`None`: the default); true if
    /// the filter changed.
    pub fn set(&mut self, level: Option<&str>) -> bool {
        if self.from_env || self.current.as_deref() == level {
            return false;
        }
        let Ok(filter) = EnvFilter::try_new(level.unwrap_or(DEFAULT_FILTER)) else {
            return false;
        };
        self.current = level.map(str::to_owned);
        self.handle.reload(filter).is_ok()
    }
}

/// Installs the log for this process (and the bridge from `log`).
pub fn init(format: LogFormat) -> LogControl {
    let env = EnvFilter::try_from_env("LANYARD_LOG").ok();
    let from_env = env.is_some();
    let (filter, handle) =
        reload::Layer::new(env.unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER)));
    let json = (format == LogFormat::Json).then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
    });
    let text = (format == LogFormat::Text).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
    });
    // A second init (tests in one process) keeps the first.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(json)
        .with(text)
        .try_init();
    LogControl {
        handle,
        from_env,
        current: None,
    }
}

/// A fatal error line in the chosen format (the process then exits).
pub fn fatal_line(format: LogFormat, program: &str, message: &str) -> String {
    match format {
        LogFormat::Text => format!("{program}: error: {message}"),
        LogFormat::Json => serde_json::json!({
            "timestamp": crate::clock::rfc3339(crate::clock::now_ms()),
            "level": "ERROR",
            "target": program,
            "fields": { "message": message },
        })
        .to_string(),
    }
}
