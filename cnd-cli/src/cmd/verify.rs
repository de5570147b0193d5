//! `cnd-cli verify`: hash one nonce independently of the search backends.

use clap::Args;
use cnd_core::puzzle::to_hex;
use serde_json::json;

use crate::args::{OutputArgs, PuzzleArgs};
use crate::exit::{usage, Exit};

/// Hash one nonce with the plain SHA-256 of the sha2 crate (none of the search
/// backends) and say whether it is golden: exit 0 if it is, 3 if it is not.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    puzzle: PuzzleArgs,

    /// The nonce to check, in decimal.
    #[arg(long, value_name = "N")]
    nonce: String,

    #[command(flatten)]
    output: OutputArgs,
}

/// Runs `cnd-cli verify`.
pub fn run(args: VerifyArgs) -> anyhow::Result<Exit> {
    let puzzle = args.puzzle.puzzle()?;
    let max = puzzle.nonce_bits().max_nonce();
    let nonce: u64 = args
        .nonce
        .trim()
        .parse()
        .ok()
        .filter(|n| *n <= max)
        .ok_or_else(|| {
            usage(format!(
                "--nonce {:?} is not a whole number between 0 and {max} ({}-bit nonces)",
                args.nonce,
                puzzle.nonce_bits()
            ))
        })?;
    let check = cnd_core::verify(&puzzle, nonce);
    if args.output.json {
        println!(
            "{}",
            json!({
                "nonce": nonce.to_string(),
                "hash": to_hex(&check.hash),
                "leading_zeros": check.leading_zeros,
                "difficulty": puzzle.difficulty(),
                "golden": check.golden,
            })
        );
    } else {
        println!("Nonce          {nonce}");
        println!("Hash           {}", to_hex(&check.hash));
        println!("Leading zeros  {}", check.leading_zeros);
        println!(
            "Verdict        {} at D = {}",
            if check.golden { "golden" } else { "NOT golden" },
            puzzle.difficulty()
        );
    }
    Ok(if check.golden {
        Exit::Success
    } else {
        Exit::Exhausted
    })
}
