//! `cnd-cli`: find golden nonces on every core here, or across a Kubernetes cluster.
//!
//! Glue only: parse, wire, print. `main → run → one function per subcommand`;
//! the exit-code policy lives in `exit.rs`.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// `eprintln!` for all of this crate (it shadows std's in every module below):
/// a line on stderr whose write errors are ignored. std's panics when the write
/// fails (stderr a closed pipe, a terminal that hung up), which under the release
/// profile's `panic = "abort"` would kill a master before it removes its workers.
macro_rules! eprintln {
    () => {
        $crate::console::stderr_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::console::stderr_line(format_args!($($arg)*))
    };
}

mod args;
mod cluster;
mod cmd;
mod console;
mod exit;
mod human;
mod journal;
mod logging;
mod machine;
mod signals;
mod startup;

use exit::Exit;

/// Cloud Nonce Discovery: find a nonce whose double SHA-256, appended to a block,
/// has at least D leading zero bits.
///
/// The hash is SHA256(SHA256(block || nonce)); the nonce is a 32-bit (or 64-bit)
/// big-endian number, or its decimal digits. Expected work is 2^D hashes.
///
/// Start here:
///   cnd-cli run -d 24                 search the whole space on every core
///   cnd-cli verify -d 24 --nonce N    check a nonce independently
///   cnd-cli plan -d 36 --within 10m   how many pods a deadline needs
///   cnd-cli bench                     MH/s of each hash backend on this CPU
///   cnd-cli submit -d 30 --pods 20    search across a Kubernetes cluster
///   cnd-cli cleanup --all             remove what interrupted runs left
///   cnd-cli sweep --pods 1,4 -d 22 --out s   time to a nonce against pods, as charts
///
/// Exit codes: 0 found · 1 error · 2 bad usage or input · 3 exhausted (no golden
/// nonce) · 4 timed out · 129 SIGHUP · 130 interrupted (SIGINT) · 131 SIGQUIT ·
/// 143 SIGTERM (after a signal, what the run created is removed first).
/// Logs go to stderr (-v, -vv, RUST_LOG).
#[derive(Debug, Parser)]
#[command(name = "cnd-cli", version, verbatim_doc_comment, max_term_width = 100)]
struct Cli {
    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    // No doc comments on the variants: clap would show a variant's instead of
    // its Args struct's, whose long help carries the explanation and examples.
    Run(cmd::run::RunArgs),
    Verify(cmd::verify::VerifyArgs),
    Plan(cmd::plan::PlanArgs),
    Bench(cmd::bench::BenchArgs),
    Submit(Box<cmd::submit::SubmitArgs>),
    Cleanup(cmd::cleanup::CleanupArgs),
    Sweep(Box<cmd::sweep::SweepArgs>),
}

fn main() -> ExitCode {
    let exit = match run() {
        Ok(exit) => exit,
        Err(err) => exit::report(&err),
    };
    exit.into()
}

fn run() -> anyhow::Result<Exit> {
    // As `Cli::parse()` does, keeping the matches: `submit --resume` asks them
    // which flags were given rather than defaulted.
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches)
        .map_err(|e| e.format(&mut Cli::command()))
        .unwrap_or_else(|e| e.exit());
    logging::init(cli.verbose);
    match cli.command {
        Command::Run(args) => cmd::run::run(args),
        Command::Verify(args) => cmd::verify::run(args),
        Command::Plan(args) => cmd::plan::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Submit(args) => {
            let matches = matches.subcommand_matches("submit");
            cmd::submit::run(*args, matches.expect("submit was parsed from its matches"))
        }
        Command::Cleanup(args) => cmd::cleanup::run(args),
        Command::Sweep(args) => cmd::sweep::run(*args),
    }
}
