//! Generated from `proto/handover.proto` (tonic).
#![allow(clippy::all, missing_docs)]
include!(concat!(env!("OUT_DIR"), "/handover.rs"));
