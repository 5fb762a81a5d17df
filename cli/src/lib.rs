//! Code shared by the two command-line front ends.

pub mod logging;
pub mod units;
