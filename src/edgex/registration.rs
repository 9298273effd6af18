//! Where each thing we register with core-metadata stands: the device
//! service, every profile, every device. One registration pass fills a
//! [`Report`]; the API shows the last one (`GET /api/v3/registration`) and
//! can ask for a new pass (`POST`), which is how refused items are retried
//! without a restart (a start always runs one).
//!
//! Kept apart from the HTTP calls (`metadata.rs`) so the rules read on
//! their own: an item core-metadata refuses does not stop the others, and a
//! device whose profile was refused is refused with that reason instead of
//! being sent half-registered.

use std::sync::Mutex;

use serde::Serialize;
use tokio::sync::Notify;

/// What a registered item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Service,
    Profile,
    Device,
    #[serde(rename = "provisionwatcher")]
    ProvisionWatcher,
}

/// Where one item stands after a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Created by this pass.
    Added,
    /// Already there and replaced (a profile) or pointed at us (the service).
    Updated,
    /// Already there and left as it is (a device).
    Existing,
    /// core-metadata refused it (or we could not send it); see `message`.
    Refused,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    pub kind: Kind,
    pub name: String,
    pub state: State,
    /// core-metadata's status for the item, when it answered one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// Why it was refused: core-metadata's own message, or ours.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
}

impl Item {
    pub fn ok(kind: Kind, name: impl Into<String>, state: State) -> Self {
        Self {
            kind,
            name: name.into(),
            state,
            status_code: None,
            message: String::new(),
        }
    }

    pub fn refused(
        kind: Kind,
        name: impl Into<String>,
        status: Option<u16>,
        message: String,
    ) -> Self {
        Self {
            kind,
            name: name.into(),
            state: State::Refused,
            status_code: status,
            message,
        }
    }

    /// A refusal that trying again soon can cure (core-metadata busy or failing).
    pub fn transient(&self) -> bool {
        self.state == State::Refused && self.status_code.is_some_and(|s| s >= 500)
    }
}

/// One registration pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Passes finished since start (0: the first is still running).
    pub passes: u64,
    /// Why the last pass could not register anything (core-metadata
    /// unreachable, or the device service refused), if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub items: Vec<Item>,
}

impl Report {
    pub fn count(&self, kind: Kind, state: State) -> usize {
        self.items
            .iter()
            .filter(|i| i.kind == kind && i.state == state)
            .count()
    }

    pub fn refused(&self) -> impl Iterator<Item = &Item> {
        self.items.iter().filter(|i| i.state == State::Refused)
    }

    /// The refusal of profile `name`, if it was refused.
    pub fn profile_refusal(&self, name: &str) -> Option<&Item> {
        self.items
            .iter()
            .find(|i| i.kind == Kind::Profile && i.name == name && i.state == State::Refused)
    }
}

/// The last report, and the trigger for a new pass: shared by the
/// registrar task and the API.
#[derive(Debug, Default)]
pub struct Registration {
    pub report: Mutex<Report>,
    pub again: Notify,
}

impl Registration {
    pub fn snapshot(&self) -> Report {
        self.report.lock().expect("registration lock").clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_counts_and_finds_refusals() {
        let r = Report {
            passes: 1,
            error: None,
            items: vec![
                Item::ok(Kind::Profile, "A", State::Added),
                Item::refused(Kind::Profile, "B", Some(400), "bad valueType".into()),
                Item::refused(Kind::Device, "d", Some(503), "busy".into()),
            ],
        };
        assert_eq!(r.count(Kind::Profile, State::Added), 1);
        assert_eq!(r.refused().count(), 2);
        assert!(r.profile_refusal("B").is_some() && r.profile_refusal("A").is_none());
        assert!(r.items[2].transient() && !r.items[1].transient());
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["items"][1]["state"], "refused");
        assert_eq!(json["items"][1]["statusCode"], 400);
        assert!(json["items"][0].get("message").is_none());
    }
}
