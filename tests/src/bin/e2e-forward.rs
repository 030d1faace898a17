//! `e2e-forward`: a byte pipe between a TCP port and a Unix socket, so a
//! simulated pod in its own network namespace reaches a service on the
//! host's loopback (and the test reaches the pod's): Unix sockets are
//! files, and files cross network namespaces.
//!
//! ```text
//! e2e-forward tcp-to-unix 127.0.0.1:5432 /tmp/pg.sock    # listen on TCP, connect to the socket
//! e2e-forward unix-to-tcp /tmp/pg.sock 127.0.0.1:5432    # listen on the socket, connect to TCP
//! ```
//!
//! One thread pair per connection; runs until killed.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::ExitCode;

/// Copies `from` into `to` until either side closes, then half-closes `to`.
fn pipe(mut from: impl Read, mut to: impl Write, close: impl FnOnce()) {
    let _ = std::io::copy(&mut from, &mut to);
    close();
}

fn splice(tcp: TcpStream, unix: UnixStream) -> std::io::Result<()> {
    let (tcp2, unix2) = (tcp.try_clone()?, unix.try_clone()?);
    let (tcp3, unix3) = (tcp.try_clone()?, unix.try_clone()?);
    std::thread::spawn(move || pipe(tcp, unix, move || drop(unix3.shutdown(Shutdown::Write))));
    std::thread::spawn(move || pipe(unix2, tcp2, move || drop(tcp3.shutdown(Shutdown::Write))));
    Ok(())
}

fn run(args: &[String]) -> Result<(), String> {
    match args {
        [mode, listen, to] if mode == "tcp-to-unix" => {
            let l =
                TcpListener::bind(listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
            for conn in l.incoming().flatten() {
                match UnixStream::connect(to) {
                    Ok(u) => drop(splice(conn, u)),
                    Err(e) => eprintln!("e2e-forward: cannot connect to {to}: {e}"),
                }
            }
            Ok(())
        }
        [mode, listen, to] if mode == "unix-to-tcp" => {
            let _ = std::fs::remove_file(listen);
            let l = UnixListener::bind(listen)
                .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
            for conn in l.incoming().flatten() {
                match TcpStream::connect(to) {
                    Ok(t) => drop(splice(t, conn)),
                    Err(e) => eprintln!("e2e-forward: cannot connect to {to}: {e}"),
                }
            }
            Ok(())
        }
        _ => Err("usage: e2e-forward tcp-to-unix ADDR SOCKET | unix-to-tcp SOCKET ADDR".into()),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("e2e-forward: {e}");
            ExitCode::from(2)
        }
    }
}
