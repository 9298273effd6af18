//! The market's state, through one query layer (sqlx's `Any` driver): a
//! SQLite file by default (nothing to install), PostgreSQL when
//! `Market.Database` names one, so several market processes can serve one
//! federation behind a load balancer. Every change is one transaction; a
//! change the ledger records appends its entry in the same transaction,
//! under a lock on the ledger (PostgreSQL) or the one connection (SQLite),
//! so the chain has no forks however many processes write.

pub mod contracts;
mod exchange;

use std::sync::Arc;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Row, Transaction};

use super::ledger::{self, Entry, LogCopy};
use super::types::*;
use crate::handover::identity::Identity;

/// Credits a new edge starts with (the market's own test currency: real
/// payment rails are outside this service).
pub const INITIAL_CREDIT: i64 = 10_000;
/// Reputation of an edge the market has not judged yet.
pub const INITIAL_REPUTATION: f64 = 0.5;

/// Why the market refused or failed a request.
#[derive(Debug, thiserror::Error)]
pub enum MarketError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Conflict(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

pub(super) fn refused(m: impl Into<String>) -> MarketError {
    MarketError::Refused(m.into())
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS edges (key TEXT PRIMARY KEY, reputation DOUBLE PRECISION NOT NULL, balance BIGINT NOT NULL, held BIGINT NOT NULL, honoured BIGINT NOT NULL, breached BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS nonces (key TEXT NOT NULL, nonce TEXT NOT NULL, time_ms BIGINT NOT NULL, PRIMARY KEY (key, nonce))",
    "CREATE TABLE IF NOT EXISTS offers (id TEXT PRIMARY KEY, provider TEXT NOT NULL, region TEXT NOT NULL, memory_mib BIGINT NOT NULL, cpu_millis BIGINT NOT NULL, price BIGINT NOT NULL, valid_until_ms BIGINT NOT NULL, lat_min DOUBLE PRECISION NOT NULL, lat_max DOUBLE PRECISION NOT NULL, lon_min DOUBLE PRECISION NOT NULL, lon_max DOUBLE PRECISION NOT NULL, body TEXT NOT NULL, created_ms BIGINT NOT NULL)",
    // Matching narrows by region and a bounding box of the offer's
    // gateways (or edge) before the exact distance is computed.
    "CREATE INDEX IF NOT EXISTS offers_match ON offers (region, lat_min)",
    "CREATE TABLE IF NOT EXISTS demands (id TEXT PRIMARY KEY, customer TEXT NOT NULL, region TEXT NOT NULL, body TEXT NOT NULL, state TEXT NOT NULL, winner TEXT, created_ms BIGINT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS demands_open ON demands (state, created_ms)",
    "CREATE TABLE IF NOT EXISTS bids (id TEXT PRIMARY KEY, demand_id TEXT NOT NULL, provider TEXT NOT NULL, offer_id TEXT NOT NULL, body TEXT NOT NULL, created_ms BIGINT NOT NULL, UNIQUE (demand_id, provider))",
    "CREATE TABLE IF NOT EXISTS contracts (id TEXT PRIMARY KEY, body TEXT NOT NULL, state TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS settlements (contract_id TEXT NOT NULL, epoch BIGINT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (contract_id, epoch))",
    "CREATE TABLE IF NOT EXISTS ledger (seq BIGINT PRIMARY KEY, time_ms BIGINT NOT NULL, kind TEXT NOT NULL, body TEXT NOT NULL, prev TEXT NOT NULL, hash TEXT NOT NULL, signature TEXT NOT NULL)",
];

/// The market's database and its signing key.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    postgres: bool,
    market: Arc<Identity>,
}

pub(super) fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("market records serialise")
}

pub(super) fn parse<T: serde::de::DeserializeOwned>(
    row: &AnyRow,
    col: &str,
) -> Result<T, MarketError> {
    let text: String = row.try_get(col)?;
    serde_json::from_str(&text).map_err(|e| MarketError::Db(sqlx::Error::Decode(Box::new(e))))
}

pub(super) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Store {
    /// Open (and create) the database at `url`: `sqlite://path` or
    /// `postgres://...`.
    pub async fn open(url: &str, market: Arc<Identity>) -> Result<Self, MarketError> {
        sqlx::any::install_default_drivers();
        let postgres = url.starts_with("postgres");
        let url = if postgres || url.contains("mode=") {
            url.to_string()
        } else {
            format!("{url}?mode=rwc")
        };
        // SQLite: one connection, so its transactions never interleave.
        let pool = AnyPoolOptions::new()
            .max_connections(if postgres { 8 } else { 1 })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if !postgres {
                        // WAL: readers never wait for the writer; NORMAL:
                        // a commit survives a crash of the process (an OS
                        // crash may lose the last ones, not corrupt).
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA synchronous = NORMAL")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        for s in SCHEMA {
            sqlx::query(s).execute(&pool).await?;
        }
        Ok(Self {
            pool,
            postgres,
            market,
        })
    }

    pub fn market_key(&self) -> String {
        self.market.public().to_hex()
    }

    /// Remember a call's nonce; `false` if it was seen (a replay). Nonces
    /// older than twice the time window are forgotten: older calls are
    /// refused by their time.
    pub async fn fresh_nonce(
        &self,
        key: &str,
        nonce: &str,
        now_ms: u64,
    ) -> Result<bool, MarketError> {
        let horizon = now_ms.saturating_sub(2 * super::auth::WINDOW) as i64;
        sqlx::query("DELETE FROM nonces WHERE time_ms < $1")
            .bind(horizon)
            .execute(&self.pool)
            .await?;
        let r = sqlx::query(
            "INSERT INTO nonces (key, nonce, time_ms) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(key)
        .bind(nonce)
        .bind(now_ms as i64)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    pub(super) async fn ensure_edge(
        tx: &mut Transaction<'_, Any>,
        key: &str,
    ) -> Result<(), MarketError> {
        sqlx::query(
            "INSERT INTO edges (key, reputation, balance, held, honoured, breached) VALUES ($1, $2, $3, 0, 0, 0) ON CONFLICT DO NOTHING",
        )
        .bind(key)
        .bind(INITIAL_REPUTATION)
        .bind(INITIAL_CREDIT)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    pub(super) async fn edge_in(
        tx: &mut Transaction<'_, Any>,
        key: &str,
    ) -> Result<EdgeAccount, MarketError> {
        Self::ensure_edge(tx, key).await?;
        let row = sqlx::query(
            "SELECT key, reputation, balance, held, honoured, breached FROM edges WHERE key = $1",
        )
        .bind(key)
        .fetch_one(&mut **tx)
        .await?;
        account(&row)
    }

    pub(super) async fn put_edge(
        tx: &mut Transaction<'_, Any>,
        e: &EdgeAccount,
    ) -> Result<(), MarketError> {
        sqlx::query("UPDATE edges SET reputation = $1, balance = $2, held = $3, honoured = $4, breached = $5 WHERE key = $6")
            .bind(e.reputation)
            .bind(e.balance)
            .bind(e.held)
            .bind(e.honoured as i64)
            .bind(e.breached as i64)
            .bind(&e.key)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// An edge's account (created on first sight).
    pub async fn edge(&self, key: &str) -> Result<EdgeAccount, MarketError> {
        let mut tx = self.pool.begin().await?;
        let e = Self::edge_in(&mut tx, key).await?;
        tx.commit().await?;
        Ok(e)
    }

    /// Append `kind`/`body` to the ledger, in `tx`.
    pub(super) async fn append(
        &self,
        tx: &mut Transaction<'_, Any>,
        now_ms: u64,
        kind: &str,
        body: String,
    ) -> Result<Entry, MarketError> {
        if self.postgres {
            sqlx::query("LOCK TABLE ledger IN SHARE ROW EXCLUSIVE MODE")
                .execute(&mut **tx)
                .await?;
        }
        let last = sqlx::query("SELECT seq, time_ms, kind, body, prev, hash, signature FROM ledger ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut **tx)
            .await?
            .map(|r| entry(&r))
            .transpose()?;
        let e = ledger::next(&self.market, last.as_ref(), now_ms, kind, body);
        sqlx::query("INSERT INTO ledger (seq, time_ms, kind, body, prev, hash, signature) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(e.seq as i64)
            .bind(e.time_ms as i64)
            .bind(&e.kind)
            .bind(&e.body)
            .bind(&e.prev)
            .bind(&e.hash)
            .bind(&e.signature)
            .execute(&mut **tx)
            .await?;
        Ok(e)
    }

    /// The ledger from `from` (1: all), with the market's key.
    pub async fn log(&self, from: u64) -> Result<LogCopy, MarketError> {
        let rows = sqlx::query("SELECT seq, time_ms, kind, body, prev, hash, signature FROM ledger WHERE seq >= $1 ORDER BY seq")
            .bind(from as i64)
            .fetch_all(&self.pool)
            .await?;
        Ok(LogCopy {
            market_key: self.market_key(),
            entries: rows.iter().map(entry).collect::<Result<_, _>>()?,
        })
    }
}

pub(super) fn account(row: &AnyRow) -> Result<EdgeAccount, MarketError> {
    Ok(EdgeAccount {
        key: row.try_get("key")?,
        reputation: row.try_get("reputation")?,
        balance: row.try_get("balance")?,
        held: row.try_get("held")?,
        honoured: row.try_get::<i64, _>("honoured")? as u64,
        breached: row.try_get::<i64, _>("breached")? as u64,
    })
}

pub(super) fn entry(row: &AnyRow) -> Result<Entry, MarketError> {
    Ok(Entry {
        seq: row.try_get::<i64, _>("seq")? as u64,
        time_ms: row.try_get::<i64, _>("time_ms")? as u64,
        kind: row.try_get("kind")?,
        body: row.try_get("body")?,
        prev: row.try_get("prev")?,
        hash: row.try_get("hash")?,
        signature: row.try_get("signature")?,
    })
}

pub(super) fn demand_of(row: &AnyRow) -> Result<Demand, MarketError> {
    Ok(Demand {
        id: row.try_get("id")?,
        customer: row.try_get("customer")?,
        body: parse(row, "body")?,
        state: row.try_get("state")?,
        winner: row.try_get("winner")?,
        created_ms: row.try_get::<i64, _>("created_ms")? as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(lat: f64, lon: f64) -> OfferBody {
        OfferBody {
            region: "EU868".into(),
            location: Location { lat, lon },
            gateways: vec![],
            resources: Resources {
                memory_mib: 1024,
                cpu_millis: 2000,
                ..Default::default()
            },
            price: 1,
            stake: 1,
            address: "x:1".into(),
            valid_until_ms: u64::MAX / 2,
        }
    }

    /// The bounding box never drops an offer within the distance, however
    /// far north (a degree of longitude shrinks there), and the exact
    /// distance drops those outside it.
    #[tokio::test]
    async fn matching_keeps_every_offer_within_the_distance_at_any_latitude() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("m.db").display());
        let s = Store::open(&url, Arc::new(Identity::generate().unwrap()))
            .await
            .unwrap();
        let p = Identity::generate().unwrap().public().to_hex();
        for lat in [0.0, 52.0, 70.0] {
            let here = Location { lat, lon: 10.0 };
            let mut d = crate::market::dmu::CustomerRules::default().demand(
                "EU868",
                here,
                vec!["26011234".into()],
            );
            d.max_distance_km = 30.0;
            // Due east, 29 and 31 km away.
            let east = |km: f64| 10.0 + km / (111.2 * lat.to_radians().cos());
            let near = s.put_offer(&p, offer(lat, east(29.0)), 1).await.unwrap();
            let far = s.put_offer(&p, offer(lat, east(31.5)), 1).await.unwrap();
            let got: Vec<String> = s
                .matching(&d, 2)
                .await
                .unwrap()
                .into_iter()
                .map(|o| o.id)
                .collect();
            assert!(got.contains(&near.id), "lat {lat}: {got:?}");
            assert!(!got.contains(&far.id), "lat {lat}");
        }
    }
}
