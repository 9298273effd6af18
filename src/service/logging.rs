//! The service's log: tracing to stderr, as text or JSON lines.

use tracing_subscriber::filter::Targets;

use crate::config::LogFormat;

/// `Log.Level` (or `RUST_LOG`, which wins): a level, or `target=level`
/// directives separated by commas (`info,device_lorawan::ingest=debug`).
/// Read by `tracing_subscriber`'s `Targets`, not its `EnvFilter`: the same
/// directives without span and field filters, and without the regular
/// expression engine those need in the binary.
pub fn init(level: &str, format: LogFormat) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = filter(std::env::var("RUST_LOG").ok().as_deref(), level);
    use std::io::IsTerminal;
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Json => registry.with(fmt.json()).init(),
        LogFormat::Text => registry.with(fmt).init(),
    }
}

/// The filter of `RUST_LOG` (`env`) if set and readable, else of `level`,
/// else `info`; what cannot be read is named on stderr.
fn filter(env: Option<&str>, level: &str) -> Targets {
    let parse = |text: &str| {
        text.parse::<Targets>()
            .map_err(|e| {
                eprintln!("log level {text:?} is not a level or a target=level list ({e})")
            })
            .ok()
    };
    env.filter(|v| !v.is_empty())
        .and_then(parse)
        .or_else(|| parse(level))
        .unwrap_or_else(|| {
            eprintln!("logging at info");
            Targets::new().with_default(tracing::Level::INFO)
        })
}

#[cfg(test)]
mod tests {
    use super::filter;
    use tracing::Level;

    /// The forms docs/configuration.md documents, and the fallbacks.
    #[test]
    fn levels_directives_and_fallbacks() {
        let f = filter(None, "warn,device_lorawan::ingest=debug");
        assert!(f.would_enable("device_lorawan::ingest::udp", &Level::DEBUG));
        assert!(!f.would_enable("device_lorawan::pipeline", &Level::INFO));
        assert!(f.would_enable("device_lorawan::pipeline", &Level::WARN));
        let f = filter(Some("trace"), "warn");
        assert!(f.would_enable("hyper", &Level::TRACE));
        // An unreadable RUST_LOG: Log.Level; both unreadable: info.
        let f = filter(Some("a=b=c"), "error");
        assert!(!f.would_enable("x", &Level::WARN));
        let f = filter(Some("a=b=c"), "x=y=z");
        assert!(f.would_enable("x", &Level::INFO));
        assert!(!f.would_enable("x", &Level::DEBUG));
        assert!(filter(Some(""), "debug").would_enable("x", &Level::DEBUG));
    }
}
