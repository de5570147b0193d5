//! One module per subcommand.

pub mod bench;
pub mod cleanup;
pub mod plan;
pub mod run;
pub mod submit;
pub mod sweep;
pub mod verify;
