//! An edge's client of the market: every call signed with the edge's
//! identity ([`super::auth`]).

use std::sync::Arc;
use std::time::Duration;

use hyper::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::ledger::LogCopy;
use super::types::*;
use crate::edgex::http::{error_message, HttpError, JsonClient};
use crate::handover::identity::Identity;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the market: {0}")]
    Http(#[from] HttpError),
    #[error("the market answered {status}: {message}")]
    Status { status: StatusCode, message: String },
    #[error("the market's answer does not read: {0}")]
    Body(String),
}

impl ClientError {
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The market at `url`, called as `me`.
#[derive(Clone)]
pub struct MarketClient {
    http: JsonClient,
    me: Arc<Identity>,
}

/// Unix milliseconds now (the clock signed calls carry).
pub use crate::handover::provider::now_ms;

impl MarketClient {
    pub fn new(url: &str, me: Arc<Identity>) -> Self {
        Self {
            http: JsonClient::new(url, Duration::from_secs(10)),
            me,
        }
    }

    pub fn key(&self) -> String {
        self.me.public().to_hex()
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        signed: bool,
    ) -> Result<T, ClientError> {
        let bytes = body.clone().unwrap_or_default();
        let headers = if signed {
            super::auth::sign(&self.me, method.as_str(), path, &bytes, now_ms())
        } else {
            Vec::new()
        };
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, text) = self.http.send_with(method, path, &h, body).await?;
        if !status.is_success() {
            return Err(ClientError::Status {
                status,
                message: error_message(&text),
            });
        }
        serde_json::from_slice(&text).map_err(|e| ClientError::Body(e.to_string()))
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        b: &B,
    ) -> Result<T, ClientError> {
        let body = serde_json::to_vec(b).expect("market requests serialise");
        self.call(Method::POST, path, Some(body), true).await
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::GET, path, None, true).await
    }

    pub async fn offer(&self, body: &OfferBody) -> Result<Offer, ClientError> {
        self.post("/api/v3/market/offers", body).await
    }

    /// The offers matching `demand` now (nothing recorded).
    pub async fn matching(&self, demand: &DemandBody) -> Result<Vec<Offer>, ClientError> {
        self.post("/api/v3/market/match", demand).await
    }

    /// Post a demand: it and the offers matching it.
    pub async fn demand(&self, body: &DemandBody) -> Result<(Demand, Vec<Offer>), ClientError> {
        #[derive(serde::Deserialize)]
        struct Posted {
            demand: Demand,
            offers: Vec<Offer>,
        }
        let p: Posted = self.post("/api/v3/market/demands", body).await?;
        Ok((p.demand, p.offers))
    }

    pub async fn get_demand(&self, id: &str) -> Result<Demand, ClientError> {
        self.get(&format!("/api/v3/market/demands/{id}")).await
    }

    /// Open demands this edge's offers match.
    pub async fn open_demands(&self) -> Result<Vec<Demand>, ClientError> {
        self.get("/api/v3/market/demands").await
    }

    pub async fn bid(&self, demand_id: &str, body: &BidBody) -> Result<Bid, ClientError> {
        self.post(&format!("/api/v3/market/demands/{demand_id}/bids"), body)
            .await
    }

    pub async fn bids(&self, demand_id: &str) -> Result<Vec<Bid>, ClientError> {
        self.get(&format!("/api/v3/market/demands/{demand_id}/bids"))
            .await
    }

    pub async fn award(&self, demand_id: &str, req: &AwardRequest) -> Result<Bid, ClientError> {
        self.post(&format!("/api/v3/market/demands/{demand_id}/award"), req)
            .await
    }

    pub async fn contract(
        &self,
        demand_id: &str,
        signed: &crate::handover::contract::SignedContract,
    ) -> Result<MarketContract, ClientError> {
        let req = ContractRequest {
            demand_id: demand_id.to_string(),
            signed: signed.clone(),
        };
        self.post("/api/v3/market/contracts", &req).await
    }

    pub async fn get_contract(&self, id: &str) -> Result<MarketContract, ClientError> {
        self.get(&format!("/api/v3/market/contracts/{id}")).await
    }

    pub async fn settle(
        &self,
        contract_id: &str,
        receipt: &crate::handover::receipt::SignedReceipt,
    ) -> Result<Settlement, ClientError> {
        self.post(
            &format!("/api/v3/market/contracts/{contract_id}/receipts"),
            receipt,
        )
        .await
    }

    /// The market's log from its first entry (public).
    pub async fn log(&self) -> Result<LogCopy, ClientError> {
        self.call(Method::GET, "/api/v3/market/log", None, false)
            .await
    }

    /// An edge's account (public).
    pub async fn edge(&self, key: &str) -> Result<EdgeAccount, ClientError> {
        self.call(
            Method::GET,
            &format!("/api/v3/market/edges/{key}"),
            None,
            false,
        )
        .await
    }
}
