//! Placeholder until the testing module lands.
fn main() {}
