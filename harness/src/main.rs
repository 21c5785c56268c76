//! The `harness` binary: parse arguments, run the command, print one error line and exit with its code
//! (1: failure while running, 2: bad input).

mod cli;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    if let Err(e) = cli::run(cli) {
        let code = e.exit_code();
        eprintln!("error: {:#}", anyhow::Error::from(e));
        std::process::exit(code);
    }
}
