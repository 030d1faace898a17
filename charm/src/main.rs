//! The Livepatch charm's `dispatch` binary: Juju runs it for every hook and
//! action.

fn main() {
    ops::main(livepatch_charm::charm::LivepatchCharm::default())
}
