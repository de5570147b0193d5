//! Timestamped logs on stderr via tracing; `RUST_LOG` overrides the default level.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Starts logging: `warn` by default, `info` with -v, `debug` with -vv, or `RUST_LOG`.
pub fn init(verbose: u8) {
    // kube-client logs every failed request at ERROR itself; cnd says what failed,
    // in a sentence, so at the default level those lines are noise.
    let default = match verbose {
        0 => "warn,kube_client=off",
        1 => "info,cnd_core=info,cnd_cloud=info",
        _ => "debug,hyper=info,h2=info,rustls=info,tower=info",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        // Its own report of a failed write is an `eprintln!` of std's, which
        // panics on the same closed stderr: failed log writes are dropped.
        .log_internal_errors(false)
        .init();
}
