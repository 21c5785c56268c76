//! The `harness` binary: parse arguments, run the command, print one error line and exit with its code
//! (1: failure while running, 2: bad input).
//!
//! Library errors already carry their causes in their one-line message (file, line, key, node, op), so the
//! message is printed as is; walking the source chain as well would print each cause twice.

mod cli;

use clap::Parser;

fn main() {
    // A reader that stops early (`harness inspect m.onnx --json | head`) ends the output quietly, as it does for
    // other Unix tools, instead of `println!` panicking on the closed pipe. Rows already written stay written.
    #[cfg(unix)]
    // SAFETY: sets the default disposition of one signal, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = cli::Cli::parse();
    if let Err(e) = cli::run(cli) {
        eprintln!("error: {e}");
        std::process::exit(e.exit_code());
    }
}
