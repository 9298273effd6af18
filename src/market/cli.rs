//! `device-lorawan market serve` and `market verify`.

use std::path::Path;

use crate::config::Config;
use crate::handover::identity::Identity;

/// The market's database URL for `config`.
pub fn database_url(config: &Config) -> String {
    if config.market.database.is_empty() {
        format!(
            "sqlite://{}",
            config.service.data_dir.join("market.db").display()
        )
    } else {
        config.market.database.clone()
    }
}

/// The market's identity in `<DataDir>/identity`, made on first start.
/// Market processes of one federation share it (copy the directory).
pub fn identity(config: &Config) -> anyhow::Result<Identity> {
    let dir = config.service.data_dir.join("identity");
    match Identity::create(&dir) {
        Err(crate::handover::identity::IdentityError::Exists { .. }) => Ok(Identity::load(&dir)?),
        made => Ok(made?),
    }
}

/// A lean build without the `market-server` feature: no market to serve.
#[cfg(not(feature = "market-server"))]
pub async fn serve(_: &Config) -> anyhow::Result<()> {
    anyhow::bail!("this build has no market server: build with the cargo feature `market-server` (a default one)")
}

/// Serve the market until SIGINT or SIGTERM.
#[cfg(feature = "market-server")]
pub async fn serve(config: &Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.service.data_dir)?;
    let me = std::sync::Arc::new(identity(config)?);
    let url = database_url(config);
    let store = super::store::Store::open(&url, me.clone()).await?;
    let listener = tokio::net::TcpListener::bind(&config.market.listen)
        .await
        .map_err(|e| anyhow::anyhow!("Market.Listen {}: {e}", config.market.listen))?;
    let addr = listener.local_addr()?;
    let db = if url.starts_with("postgres") {
        "postgres"
    } else {
        "sqlite"
    };
    tracing::info!(%addr, key = %me.public().to_hex(), database = db, "market listening");
    println!("market {addr} key {}", me.public().to_hex());
    let market = std::sync::Arc::new(super::api::Market::new(store));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = super::api::serve(listener, market) => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    Ok(())
}

/// Check a copy of the market's log offline (`GET /api/v3/market/log`):
/// chain and signatures, against `key` when given (else the key the copy
/// names).
pub fn verify(file: &Path, key: Option<&str>) -> anyhow::Result<String> {
    let text = std::fs::read(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let copy: super::ledger::LogCopy = serde_json::from_slice(&text)
        .map_err(|e| anyhow::anyhow!("{}: not a market log: {e}", file.display()))?;
    if let Some(k) = key {
        if !k.eq_ignore_ascii_case(&copy.market_key) {
            anyhow::bail!(
                "the log is signed for key {}, not the market's {k}",
                copy.market_key
            );
        }
    }
    super::ledger::verify(&copy)?;
    let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
    for e in &copy.entries {
        *kinds.entry(e.kind.as_str()).or_default() += 1;
    }
    let summary: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
    Ok(format!(
        "the log holds: {} entries ({}), chained and signed by {}\n",
        copy.entries.len(),
        summary.join(", "),
        copy.market_key
    ))
}
