//! `livepatch-admin`: see `workload::admin_cli`. Exit codes: 0 ok, 1 the server or the network
//! refused (one line on stderr), 2 usage.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = workload::admin_cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(workload::admin_cli::run(cli)) {
        Ok(out) => {
            if !out.is_empty() {
                println!("{out}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::from(1)
        }
    }
}
