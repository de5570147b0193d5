//! A local SQS for tests: a `moto_server` process (`pip install 'moto[server]'`).

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_config::BehaviorVersion;
use aws_sdk_sqs::config::{Credentials, Region};

use super::Client;

/// The environment variable naming the `moto_server` binary (else it is looked up on `PATH`).
pub const MOTO_SERVER_ENV: &str = "CND_MOTO_SERVER";

/// How long a fresh moto server may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A `moto_server` on a free port of 127.0.0.1, killed on drop. Sets nothing
/// global: pass [`MotoServer::endpoint`] to what needs it.
#[derive(Debug)]
pub struct MotoServer {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl MotoServer {
    /// Starts a server and waits until it accepts connections.
    ///
    /// # Panics
    /// If `moto_server` cannot be found or does not start.
    pub fn start() -> MotoServer {
        // The port is free when we look; another process could take it before
        // moto binds, so try a few.
        let mut last_error = String::new();
        for _ in 0..3 {
            let port = free_port();
            let (child, log) = spawn_moto(port);
            let mut server = MotoServer { child, port, log };
            match server.wait_until_up() {
                Ok(()) => return server,
                Err(err) => last_error = err,
            }
        }
        panic!("moto_server did not start: {last_error}");
    }

    /// Kills the server (SIGKILL) and starts a fresh one on the same port:
    /// an SQS that crashed and came back empty.
    ///
    /// # Panics
    /// If the new server does not start.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (child, log) = spawn_moto(self.port);
        self.child = child;
        self.log = log;
        if let Err(err) = self.wait_until_up() {
            panic!("moto_server did not come back: {err}");
        }
    }

    fn wait_until_up(&mut self) -> Result<(), String> {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "it exited with {status}; see {}",
                    self.log.display()
                ));
            }
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "it did not answer on port {} within {START_TIMEOUT:?}; see {}",
            self.port,
            self.log.display()
        ))
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// An SQS client for this server.
    pub async fn client(&self) -> Client {
        client_for(&self.endpoint()).await
    }
}

/// Starts `moto_server` on `port`, logging to a file.
fn spawn_moto(port: u16) -> (Child, PathBuf) {
    let program = std::env::var_os(MOTO_SERVER_ENV).unwrap_or_else(|| "moto_server".into());
    let log = std::env::temp_dir().join(format!("cnd-moto-{port}.log"));
    let log_file = std::fs::File::create(&log).expect("create the moto log file");
    let spawned = Command::new(&program)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        // To a file, not a pipe: moto logs every request, and a pipe
        // nobody reads would fill up and stall it.
        .stdout(log_file.try_clone().expect("clone the log file"))
        .stderr(log_file)
        .spawn();
    match spawned {
        Ok(child) => (child, log),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => panic!(
            "moto_server not found ({}): install it with `pip install 'moto[server]'` (.ci/test does) or set {MOTO_SERVER_ENV}",
            program.to_string_lossy()
        ),
        Err(err) => panic!("could not start {}: {err}", program.to_string_lossy()),
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// An SQS client for `endpoint` with region `us-east-1` and static test
/// credentials, ignoring the environment. The SDK's own retries are off so a
/// test sees a failure at once (and [`super::SqsReportSender`]'s retries alone).
pub async fn client_for(endpoint: &str) -> Client {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .http_client(super::http_client())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .retry_config(RetryConfig::disabled())
        .load()
        .await;
    Client::new(&config)
}

/// What a [`FaultProxy`] does to the traffic through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forwards everything both ways.
    Pass,
    /// Accepts connections and holds every byte, answering nothing: an
    /// endpoint that stalls without closing. Held bytes flow again on `Pass`.
    Stall,
    /// Closes every connection, open or new.
    Cut,
}

/// A TCP proxy on 127.0.0.1 in front of `upstream` (a moto server) that can
/// delay, stall or cut the traffic on demand. Its threads end when it is dropped.
#[derive(Debug)]
pub struct FaultProxy {
    port: u16,
    fault: Arc<AtomicU8>,
    delay_ms: Arc<AtomicU64>,
    closed: Arc<AtomicBool>,
    /// Requests naming this operation get no answer (see [`FaultProxy::hold_answers_to`]).
    hold: Arc<std::sync::Mutex<Option<String>>>,
}

/// What the two pumps of one connection share: whether the answer to the
/// request in flight is being held.
#[derive(Clone)]
struct Gate {
    hold: Arc<std::sync::Mutex<Option<String>>>,
    answer_held: Arc<AtomicBool>,
    /// This pump carries requests (client to server), not answers.
    requests: bool,
}

impl Gate {
    fn holding(&self) -> Option<String> {
        self.hold.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Looks at bytes passed on; true if they must be held back.
    fn holds(&self, bytes: &[u8]) -> bool {
        let Some(operation) = self.holding() else {
            self.answer_held.store(false, Ordering::SeqCst);
            return false;
        };
        if self.requests {
            if bytes
                .windows(operation.len())
                .any(|w| w == operation.as_bytes())
            {
                self.answer_held.store(true, Ordering::SeqCst);
            }
            false
        } else {
            self.answer_held.load(Ordering::SeqCst)
        }
    }
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`http://127.0.0.1:PORT`, as
    /// [`MotoServer::endpoint`] gives), passing traffic.
    pub fn start(upstream: &str) -> FaultProxy {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .parse()
            .expect("an http://IP:PORT endpoint");
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the proxy");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let port = listener.local_addr().expect("local address").port();
        let proxy = FaultProxy {
            port,
            fault: Arc::new(AtomicU8::new(Fault::Pass as u8)),
            delay_ms: Arc::new(AtomicU64::new(0)),
            closed: Arc::new(AtomicBool::new(false)),
            hold: Arc::default(),
        };
        let (fault, delay, closed, hold) = (
            Arc::clone(&proxy.fault),
            Arc::clone(&proxy.delay_ms),
            Arc::clone(&proxy.closed),
            Arc::clone(&proxy.hold),
        );
        std::thread::spawn(move || {
            while !closed.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let Ok(server) = TcpStream::connect(upstream) else {
                            continue;
                        };
                        let answer_held = Arc::new(AtomicBool::new(false));
                        for (from, to, requests) in [
                            (client.try_clone(), server.try_clone(), true),
                            (server.try_clone(), client.try_clone(), false),
                        ] {
                            if let (Ok(from), Ok(to)) = (from, to) {
                                let (fault, delay, closed) =
                                    (Arc::clone(&fault), Arc::clone(&delay), Arc::clone(&closed));
                                let gate = Gate {
                                    hold: Arc::clone(&hold),
                                    answer_held: Arc::clone(&answer_held),
                                    requests,
                                };
                                std::thread::spawn(move || {
                                    pump(from, to, &fault, &delay, &closed, &gate)
                                });
                            }
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        proxy
    }

    /// `http://127.0.0.1:PORT` of the proxy.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// From now on, does `fault` to the traffic.
    pub fn set(&self, fault: Fault) {
        self.fault.store(fault as u8, Ordering::SeqCst);
    }

    /// From now on, answers to requests that name `operation` (the SDK names
    /// it in each request, e.g. `DeleteMessageBatch`) are held, never passed
    /// on while this lasts: an endpoint that stalls on one kind of call.
    /// `None` passes them again.
    pub fn hold_answers_to(&self, operation: Option<&str>) {
        *self.hold.lock().unwrap_or_else(|e| e.into_inner()) = operation.map(str::to_string);
    }

    /// From now on, holds every chunk passed on (each way) for `delay`: a
    /// slow, distant or congested endpoint.
    pub fn delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.delay_ms.store(ms, Ordering::SeqCst);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::SeqCst);
    }
}

/// Copies `from` to `to` as the proxy's fault says, until either end closes,
/// the fault is `Cut`, or the proxy is dropped.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    fault: &AtomicU8,
    delay_ms: &AtomicU64,
    closed: &AtomicBool,
    gate: &Gate,
) {
    use std::io::{Read, Write};
    let _ = from.set_read_timeout(Some(Duration::from_millis(20)));
    let mut buffer = [0u8; 16 * 1024];
    let mut held: Vec<u8> = Vec::new();
    while !closed.load(Ordering::SeqCst) {
        let now = fault.load(Ordering::SeqCst);
        if now == Fault::Cut as u8 {
            break;
        }
        if now == Fault::Pass as u8 && !held.is_empty() && !gate.holds(&[]) {
            if to.write_all(&held).is_err() {
                break;
            }
            held.clear();
        }
        match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) if now == Fault::Pass as u8 && !gate.holds(&buffer[..n]) => {
                std::thread::sleep(Duration::from_millis(delay_ms.load(Ordering::SeqCst)));
                if to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
            Ok(n) => held.extend_from_slice(&buffer[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(std::net::Shutdown::Both);
    let _ = to.shutdown(std::net::Shutdown::Both);
}

/// A TCP port nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free port");
    listener.local_addr().expect("local address").port()
}
