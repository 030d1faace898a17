//! The demo charm's `dispatch` binary: all a charm's `main` needs to be.

mod charm;

fn main() {
    ops::main(charm::DemoCharm)
}
