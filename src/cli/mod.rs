//! What the command line runs besides the service: the quickstart
//! ([`demo`]), codec tools ([`codec`]: decode, test against fixtures,
//! import vendors' profiles), and the Arduino mote's settings ([`sketch`]).

pub mod codec;
pub mod demo;
pub mod sketch;
