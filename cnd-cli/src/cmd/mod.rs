//! One module per subcommand.

pub mod bench;
pub mod plan;
pub mod run;
pub mod verify;
pub mod cleanup;
pub mod submit;
