//! How a device's payload is read: the profile names its codec.

use serde::{Deserialize, Serialize};

/// How a device's payload is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CodecKind {
    /// Cayenne LPP; resources bound by `lppChannel`, `lppType`, `lppField` attributes.
    #[default]
    CayenneLpp,
    /// The profile's binary layout (`offset`/`length`/... attributes).
    Layout,
    /// The whole payload into the profile's first `Binary` resource.
    Raw,
    /// The whole payload, hex, into the profile's first `String` resource.
    RawHex,
    /// The vendor's TS013 JavaScript codec (`<ProfilesDir>/<profile>.js`);
    /// `data` fields go to resources by name, or by a `jsPath` attribute.
    Javascript,
}
