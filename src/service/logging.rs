//! The service's log: tracing to stderr, as text or JSON lines.

use crate::config::LogFormat;

/// `Log.Level` (or `RUST_LOG`, which wins): a level, or `target=level`
/// directives separated by commas (`info,device_lorawan::ingest=debug`).
/// Read by `tracing_subscriber`'s `Targets`, not its `EnvFilter`: the same
/// directives without span and field filters, and without the regular
/// expression engine they need (about a megabyte of binary).
pub fn init(level: &str, format: LogFormat) {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let parse = |text: &str| {
        text.parse::<Targets>()
            .map_err(|e| {
                eprintln!("log level {text:?} is not a level or a target=level list ({e})")
            })
            .ok()
    };
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.is_empty())
        .and_then(|v| parse(&v))
        .or_else(|| parse(level))
        .unwrap_or_else(|| {
            eprintln!("logging at info");
            Targets::new().with_default(tracing::Level::INFO)
        });
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
