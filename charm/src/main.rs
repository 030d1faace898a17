//! The Livepatch charm's `dispatch` binary. The hook runner arrives with the
//! `ops` framework; until then the binary only exits cleanly.

fn main() {}
