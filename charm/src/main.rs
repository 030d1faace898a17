//! The Livepatch charm's `dispatch` binary. Work in progress: see issue 4.

fn main() {}
