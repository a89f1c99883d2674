//! The log of `lanyard-agent` and `lanyard`: text, or one JSON object per
//! line (`LANYARD_LOG_FORMAT=json`), on stderr, with the `log` records of
//! rustls bridged in. The filter is `LANYARD_LOG` (default `warn`).

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::EnvFilter;

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

    /// A message for the person or the journal from `program`: `program:
    /// message` as text, or a JSON object with its level.
    pub fn line(self, program: &str, level: &str, message: &str) -> String {
        match self {
            Self::Text if level == "ERROR" => format!("{program}: error: {message}"),
            Self::Text => format!("{program}: {message}"),
            Self::Json => serde_json::json!({
                "timestamp": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
                "level": level,
                "target": program,
                "fields": { "message": message },
            })
            .to_string(),
        }
    }
}

/// Installs the log for this process (and the bridge from `log`).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env("LANYARD_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
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
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(json)
        .with(text)
        .try_init();
}
