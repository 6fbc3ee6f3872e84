//! [`ServerProcess`]: any server program for tests (a Python twin of a service, a store, a
//! cache), started on 127.0.0.1 and a free port, frozen and thawed with signals to play a hung
//! server, and always stopped, even when the test fails.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow};

/// How long a server may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running server process.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    port: u16,
    program: String,
}

/// The ports [`free_port`] handed out in this process. The kernel may give the same free port
/// to two binds in a row once the first is closed, and the tests of one binary run in parallel:
/// without this, two tests could start their servers on one port, and the second server, which
/// cannot bind, would be taken for the first (a test that publishes to a fresh store would find
/// another test's objects there).
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A port nobody listens on right now, never the same twice in one process.
pub fn free_port() -> Result<u16> {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    for _ in 0..1000 {
        let port = TcpListener::bind(("127.0.0.1", 0))
            .and_then(|listener| listener.local_addr())
            .map(|address| address.port())
            .with_context(|| "finding a free port")?;
        if handed_out.insert(port) {
            return Ok(port);
        }
    }
    Err(anyhow!("no free port that this process has not handed out already"))
}

impl ServerProcess {
    /// Starts `program` with `args`, which make it listen on `port`, and waits until it does.
    /// `install_hint` says how to get a missing program.
    pub async fn start(
        program: &str,
        args: &[String],
        port: u16,
        install_hint: &str,
    ) -> Result<Self> {
        let mut command = Command::new(program);
        command.args(args);
        Self::spawn(command, port, install_hint).await
    }

    /// Starts `command` (with its environment and directory), which makes it listen on
    /// `port`, and waits until it does.
    pub async fn spawn(mut command: Command, port: u16, install_hint: &str) -> Result<Self> {
        let program = command.get_program().to_string_lossy().into_owned();
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {program} ({install_hint})"))?;
        let mut server = Self { child, port, program: program.clone() };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            server.fail_if_exited()?;
            if start.elapsed() > START_TIMEOUT {
                return Err(anyhow!(
                    "{program} did not listen on port {port} within {} s",
                    START_TIMEOUT.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server.fail_if_exited()?;
        Ok(server)
    }

    /// An error if the process has exited: it could not listen (a port taken by another
    /// program), and whatever answers on its port is not it.
    fn fail_if_exited(&mut self) -> Result<()> {
        match self.child.try_wait().with_context(|| format!("watching {}", self.program))? {
            Some(status) => Err(anyhow!(
                "{} exited ({status}) before it listened on port {}",
                self.program,
                self.port
            )),
            None => Ok(()),
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Freezes the process (SIGSTOP): connections are accepted but never answered.
    pub fn pause(&self) -> Result<()> {
        self.signal("-STOP")
    }

    /// Thaws a paused process (SIGCONT).
    pub fn resume(&self) -> Result<()> {
        self.signal("-CONT")
    }

    fn signal(&self, signal: &str) -> Result<()> {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .with_context(|| format!("signalling {}", self.program))?;
        if status.success() { Ok(()) } else { Err(anyhow!("kill {signal} failed")) }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.resume();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
