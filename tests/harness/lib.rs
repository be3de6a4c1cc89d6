//! The test harness: starts the real `haven` controller and real `haven-agent` processes on
//! loopback with temporary directories, and drives them through the real command line.
//!
//! Nothing here is a mock. The binaries are built from this workspace on first use (the same
//! profile as the tests), or taken from `HAVEN_BIN_DIR` when that is set.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The directory holding `haven` and `haven-agent`, building them once if needed.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("HAVEN_BIN_DIR") {
            return PathBuf::from(dir);
        }
        // target/<profile>/deps/e2e-… → target/<profile>
        let exe = std::env::current_exe().expect("test executable path");
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target directory")
            .to_path_buf();
        let profile = dir.file_name().and_then(|n| n.to_str()).unwrap_or("debug");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let mut cmd = Command::new(cargo);
        cmd.current_dir(workspace).args([
            "build",
            "--quiet",
            "-p",
            "haven-controller",
            "-p",
            "haven-agent",
            "--bins",
        ]);
        if profile == "release" {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build for the binaries");
        assert!(status.success(), "building haven and haven-agent failed");
        dir
    })
}

pub fn haven_bin() -> PathBuf {
    bin_dir().join("haven")
}

pub fn agent_bin() -> PathBuf {
    bin_dir().join("haven-agent")
}

/// Lines a child process printed, collected by a background thread.
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    fn follow(&self, stream: impl std::io::Read + Send + 'static, echo: &'static str) {
        let lines = self.0.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("HAVEN_TEST_ECHO").is_some() {
                    eprintln!("[{echo}] {line}");
                }
                lines.lock().unwrap().push(line);
            }
        });
    }

    pub fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    pub fn text(&self) -> String {
        self.all().join("\n")
    }

    /// Waits for a line containing `needle`, returning it.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.all().into_iter().find(|l| l.contains(needle)) {
                return Some(line);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn count(&self, needle: &str) -> usize {
        self.all().iter().filter(|l| l.contains(needle)).count()
    }
}

/// Waits until `check` returns `Some`, or panics with `what` after `timeout`.
pub fn eventually<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends SIGTERM (a polite stop) to a process we started.
fn terminate(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
}

/// The files in a controller's data directory that every replica of it shares.
pub const REPLICA_SHARED_FILES: [&str; 5] = [
    "ca.pem",
    "ca-key.pem",
    "server.pem",
    "server-key.pem",
    "audit-key.txt",
];

/// A running `haven serve`.
pub struct Controller {
    pub data_dir: PathBuf,
    pub url: String,
    pub port: u16,
    pub login_line: Option<String>,
    first_token: Option<String>,
    pub stdout: Lines,
    pub stderr: Lines,
    child: Option<Child>,
    extra_args: Vec<String>,
}

impl Controller {
    /// Starts a controller on a free loopback port with its data in `data_dir`.
    pub fn start(data_dir: &Path) -> Controller {
        Self::start_on(data_dir, 0, &[])
    }

    pub fn start_with(data_dir: &Path, args: &[&str]) -> Controller {
        Self::start_on(data_dir, 0, args)
    }

    fn start_on(data_dir: &Path, port: u16, args: &[&str]) -> Controller {
        let mut child = Command::new(haven_bin())
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(args)
            .env_remove("HAVEN_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start haven serve");
        let stdout = Lines::default();
        let stderr = Lines::default();
        stdout.follow(child.stdout.take().unwrap(), "controller");
        stderr.follow(child.stderr.take().unwrap(), "controller log");
        let Some(listening) = stdout.wait_for("listening on https://", Duration::from_secs(30))
        else {
            let _ = child.kill();
            panic!(
                "the controller did not start:\n{}\n{}",
                stdout.text(),
                stderr.text()
            );
        };
        let addr = listening
            .split("listening on https://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .expect("address in the listening line")
            .to_string();
        let port = addr.rsplit(':').next().unwrap().parse().unwrap();
        let lines = stdout.all();
        let login_line = lines
            .iter()
            .find(|l| l.trim_start().starts_with("haven login "))
            .map(|l| l.trim().to_string());
        let first_token = token_in(lines.iter().map(String::as_str));
        Controller {
            data_dir: data_dir.to_path_buf(),
            url: format!("https://{addr}"),
            port,
            login_line,
            first_token,
            stdout,
            stderr,
            child: Some(child),
            extra_args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Another replica of this controller on the PostgreSQL `database` (issue 16): the same
    /// CA, server certificate and audit key, copied into `data_dir`, as README's replica setup
    /// says every replica must have.
    pub fn start_replica(&self, data_dir: &Path, database: &str) -> Controller {
        std::fs::create_dir_all(data_dir).expect("replica folder");
        for name in REPLICA_SHARED_FILES {
            let from = self.data_dir.join(name);
            if from.exists() {
                std::fs::copy(&from, data_dir.join(name)).expect("copy the controller's keys");
            }
        }
        Controller::start_with(data_dir, &["--database", database])
    }

    /// The CA pin from the first-start login line (or the saved first-login file).
    pub fn ca_pin(&self) -> String {
        self.first_login_words()
            .into_iter()
            .skip_while(|w| w != "--ca-pin")
            .nth(1)
            .expect("ca pin")
    }

    /// The first administrator's token, as the first start printed it (`token: hvn_…`, to be
    /// pasted when `haven login` asks), or from the first-login file while it exists.
    pub fn first_token(&self) -> String {
        self.first_token
            .clone()
            .or_else(|| {
                std::fs::read_to_string(self.data_dir.join("first-login.txt"))
                    .ok()
                    .and_then(|text| token_in(text.lines()))
            })
            .expect("the first administrator's token")
    }

    fn first_login_words(&self) -> Vec<String> {
        let line = self.login_line.clone().unwrap_or_else(|| {
            std::fs::read_to_string(self.data_dir.join("first-login.txt")).unwrap()
        });
        line.split_whitespace().map(str::to_string).collect()
    }

    /// The controller's resident memory in KiB, from `/proc` (Linux).
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Stops with SIGTERM and returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("controller is running");
        terminate(&mut child);
        child.wait().expect("wait for the controller")
    }

    /// Kills with SIGKILL (no chance to flush or finish anything) and reaps the process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops (if running) and starts again on the same port and data directory.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        let args: Vec<String> = self.extra_args.clone();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let first_token = self.first_token.take();
        // The port was ours a moment ago; wait until it can be bound again so the restart does
        // not race the kernel (or another test's outgoing connection) for it.
        eventually(
            "the controller's port to be free",
            Duration::from_secs(10),
            || std::net::TcpListener::bind(("127.0.0.1", self.port)).ok(),
        );
        let mut fresh = Self::start_on(&self.data_dir, self.port, &args);
        fresh.first_token = fresh.first_token.take().or(first_token);
        *self = fresh;
    }

    /// Restarts on the same port and data directory with other `haven serve` flags.
    pub fn restart_with(&mut self, args: &[&str]) {
        self.extra_args = args.iter().map(|s| s.to_string()).collect();
        self.restart();
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The staff command line, logged in through its own config file.
#[derive(Clone)]
pub struct Cli {
    pub config: PathBuf,
    pub token: Option<String>,
}

/// What a command printed and how it ended.
pub struct Run {
    pub ok: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            ok: o.status.success(),
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Cli {
    pub fn new(dir: &Path) -> Cli {
        Cli {
            config: dir.join("login.toml"),
            token: None,
        }
    }

    /// The same login, acting with another token.
    pub fn as_token(&self, token: &str) -> Cli {
        Cli {
            config: self.config.clone(),
            token: Some(token.to_string()),
        }
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(haven_bin());
        cmd.args(args)
            .env("HAVEN_CLI_CONFIG", &self.config)
            .env_remove("HAVEN_TOKEN")
            .stdin(Stdio::null());
        if let Some(t) = &self.token {
            cmd.env("HAVEN_TOKEN", t);
        }
        cmd.output().expect("run haven").into()
    }

    /// Runs a command with `input` on its standard input (a token for `haven login`).
    pub fn run_with_input(&self, args: &[&str], input: &str) -> Run {
        use std::io::Write;
        let mut cmd = Command::new(haven_bin());
        cmd.args(args)
            .env("HAVEN_CLI_CONFIG", &self.config)
            .env_remove("HAVEN_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run haven");
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(input.as_bytes());
        }
        child.wait_with_output().expect("run haven").into()
    }

    /// Logs in to `controller` as the holder of `token`, pasted on standard input.
    pub fn login(&self, controller: &Controller, token: &str) -> Run {
        self.login_at(&controller.url, &controller.ca_pin(), token)
    }

    /// Logs in to the controller at `url`, trusted through `pin` (another replica of the same
    /// controller has no first-start pin of its own).
    pub fn login_at(&self, url: &str, pin: &str, token: &str) -> Run {
        self.run_with_input(&["login", url, "--ca-pin", pin], &format!("{token}\n"))
    }

    /// Runs a command that must succeed; returns its standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let r = self.run(args);
        assert!(
            r.ok,
            "`haven {}` failed:\n{}\n{}",
            args.join(" "),
            r.stdout,
            r.stderr
        );
        r.stdout
    }

    /// Runs a command that must fail; returns its one-line error.
    pub fn fails(&self, args: &[&str]) -> String {
        let r = self.run(args);
        assert!(
            !r.ok,
            "`haven {}` should have failed:\n{}",
            args.join(" "),
            r.stdout
        );
        assert_eq!(r.code, Some(1), "a refusal exits with 1");
        let err = r.stderr.trim().to_string();
        assert_eq!(err.lines().count(), 1, "one line of error, got:\n{err}");
        assert!(err.starts_with("error: "), "{err}");
        for debug_marker in ["Status {", "code:", "panicked", "RUST_BACKTRACE", "{ "] {
            assert!(
                !err.contains(debug_marker),
                "debug output reached the user: {err}"
            );
        }
        err
    }

    /// Starts a command that keeps running (e.g. `violations --watch`), following its output.
    /// It is killed when the returned value is dropped.
    pub fn spawn(&self, args: &[&str]) -> Running {
        let mut cmd = Command::new(haven_bin());
        cmd.args(args)
            .env("HAVEN_CLI_CONFIG", &self.config)
            .env_remove("HAVEN_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(t) = &self.token {
            cmd.env("HAVEN_TOKEN", t);
        }
        let mut child = cmd.spawn().expect("start haven");
        let stdout = Lines::default();
        let stderr = Lines::default();
        stdout.follow(child.stdout.take().unwrap(), "haven");
        stderr.follow(child.stderr.take().unwrap(), "haven err");
        Running {
            stdout,
            stderr,
            child,
        }
    }

    /// Runs a read command with `--json` and parses it.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.ok(&all);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }
}

/// A `haven` command left running; killed on drop.
pub struct Running {
    pub stdout: Lines,
    pub stderr: Lines,
    child: Child,
}

impl Running {
    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads a number from `haven … --json`, which is proto3's canonical JSON: 64-bit integers
/// print as strings (`"1733400000000"`), 32-bit ones as numbers. Either form reads here, and
/// so does JSON the command line writes itself.
pub trait JsonInt {
    fn int(&self) -> Option<i64>;
    fn uint(&self) -> Option<u64>;
}

impl JsonInt for Value {
    fn int(&self) -> Option<i64> {
        self.as_i64()
            .or_else(|| self.as_str().and_then(|s| s.parse().ok()))
    }

    fn uint(&self) -> Option<u64> {
        self.as_u64()
            .or_else(|| self.as_str().and_then(|s| s.parse().ok()))
    }
}

/// What the log enforcer prints when it applies `version` (the dash keeps 1 from matching 12).
pub fn applied_line(version: u64) -> String {
    format!("policy version {version} —")
}

/// The token on a `token: hvn_…` line, as the first start prints it.
fn token_in<'a>(mut lines: impl Iterator<Item = &'a str>) -> Option<String> {
    lines.find_map(|l| {
        l.trim()
            .strip_prefix("token: ")
            .map(|t| t.trim().to_string())
    })
}

/// A loopback port free for both UDP and TCP right now.
pub fn free_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a loopback port");
        let Ok(addr) = udp.local_addr() else { continue };
        if std::net::TcpListener::bind(("127.0.0.1", addr.port())).is_ok() {
            return addr.port();
        }
    }
}

/// Whether this test process runs as root. Tests that need root (process control, fanotify,
/// network namespaces) call [`skip_unless_root`] first.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Returns true (and prints why) when the test named `test` must be skipped because it is not
/// running as root. CI runs as root, so there such tests always run and assert.
pub fn skip_unless_root(test: &str) -> bool {
    if is_root() {
        return false;
    }
    eprintln!(
        "SKIPPED {test}: needs root (it uses process control, fanotify or network namespaces); run the tests as root, as CI does"
    );
    true
}

/// A `haven-agent` with its own state directory.
pub struct Agent {
    pub state_dir: PathBuf,
    pub stdout: Lines,
    pub stderr: Lines,
    child: Option<Child>,
}

impl Agent {
    pub fn new(state_dir: &Path) -> Agent {
        Agent {
            state_dir: state_dir.to_path_buf(),
            stdout: Lines::default(),
            stderr: Lines::default(),
            child: None,
        }
    }

    pub fn command(&self, args: &[&str]) -> Run {
        Command::new(agent_bin())
            .args(args)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .stdin(Stdio::null())
            .output()
            .expect("run haven-agent")
            .into()
    }

    pub fn enroll(&self, controller: &Controller, code: &str) -> Run {
        self.command(&[
            "enroll",
            "--controller",
            &controller.url,
            "--ca-pin",
            &controller.ca_pin(),
            "--code",
            code,
        ])
    }

    /// Starts `haven-agent run` with the log enforcer and short retry times.
    pub fn start(&mut self) {
        self.start_with(&["--enforcer", "log"]);
    }

    /// Starts `haven-agent run --enforcer linux` with every guard pointed at stand-ins inside
    /// the agent's own folder (a temp file for the camera, a socket for contact screening), so
    /// a test never touches the host's real devices. `extra` adds flags or replaces these.
    pub fn start_linux(&mut self, extra: &[&str]) {
        std::fs::create_dir_all(&self.state_dir).expect("agent folder");
        let camera = self.state_dir.join("camera0");
        if !camera.exists() {
            std::fs::write(&camera, b"").expect("stand-in camera");
        }
        let camera = camera.to_string_lossy().into_owned();
        let socket = self
            .state_dir
            .join("screening.sock")
            .to_string_lossy()
            .into_owned();
        // The web filter answers on a free loopback port and asks a loopback port nobody
        // answers on: a test never binds the host's port 53 or sends DNS off the machine.
        let dns = format!("127.0.0.1:{}", free_port());
        let upstream = format!("127.0.0.1:{}", free_port());
        // The telephony guard never looks at the host's system bus: unless the test gives
        // its own private bus, it is pointed at one that is not there ("no modem").
        let no_bus = format!("unix:path={}", self.state_dir.join("no-bus").display());
        let mut args: Vec<&str> = vec!["--enforcer", "linux"];
        for (flag, value) in [
            ("--camera-path", camera.as_str()),
            ("--screening-socket", socket.as_str()),
            ("--dns-listen", dns.as_str()),
            ("--dns-upstream", upstream.as_str()),
            // The exec guard would watch every filesystem of this machine: its own tests
            // watch only a tmpfs they mount.
            ("--exec-filesystem", "none"),
            ("--telephony-bus", no_bus.as_str()),
        ] {
            if !extra.contains(&flag) {
                args.extend([flag, value]);
            }
        }
        args.extend_from_slice(extra);
        self.start_with(&args);
    }

    /// Starts `haven-agent run` with short retry times and `args` (which must choose the
    /// enforcer, e.g. `--enforcer linux --camera-path ...`).
    pub fn start_with(&mut self, args: &[&str]) {
        assert!(self.child.is_none(), "agent already running");
        let mut child = Command::new(agent_bin())
            .arg("run")
            .args(args)
            .args([
                "--max-backoff-secs",
                "2",
                // Far longer than any wait below: a policy that arrives in time was pushed,
                // not fetched on a timer.
                "--heartbeat-secs",
                "30",
            ])
            .arg("--state-dir")
            .arg(&self.state_dir)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start haven-agent run");
        self.stdout = Lines::default();
        self.stderr = Lines::default();
        self.stdout.follow(child.stdout.take().unwrap(), "agent");
        self.stderr
            .follow(child.stderr.take().unwrap(), "agent log");
        self.child = Some(child);
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child);
            let _ = child.wait();
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Hands over the running process, for tests that stop it themselves.
    pub fn take_child(&mut self) -> Option<Child> {
        self.child.take()
    }

    /// Waits for the enforcer to report applying `version`.
    pub fn wait_applied(&self, version: u64, timeout: Duration) -> bool {
        self.stdout
            .wait_for(&applied_line(version), timeout)
            .is_some()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn identity_file(&self, name: &str) -> String {
        std::fs::read_to_string(self.state_dir.join(name))
            .unwrap_or_else(|e| panic!("read {name} from the agent state: {e}"))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A controller with a logged-in administrator, a home, a child and (optionally) enrolled
/// agents: the starting point of most tests.
pub struct Home {
    pub dir: tempfile::TempDir,
    pub controller: Controller,
    pub admin: Cli,
    pub manager: Cli,
    pub child_id: String,
    /// The PostgreSQL schema the controller keeps its records in (`Home::on_postgres`);
    /// dropped after the controller stops.
    pub database: Option<PgSchema>,
}

impl Home {
    pub fn new() -> Home {
        Self::new_with(&[])
    }

    /// A home whose controller keeps its records in a fresh PostgreSQL schema of its own
    /// (`--database`), or `None` after printing `SKIPPED: …` when no PostgreSQL answers at
    /// `HAVEN_TEST_DATABASE_URL`. More controllers can share it:
    /// `Controller::start_with(dir, &["--database", &home.database_url().unwrap()])`.
    pub fn on_postgres() -> Option<Home> {
        let schema = postgres_schema()?;
        let url = schema.url();
        let mut home = Self::new_with(&["--database", &url]);
        home.database = Some(schema);
        Some(home)
    }

    /// The `--database` URL of a home made by `on_postgres`.
    pub fn database_url(&self) -> Option<String> {
        self.database.as_ref().map(PgSchema::url)
    }

    /// A home whose controller is started with extra `haven serve` flags.
    pub fn new_with(controller_args: &[&str]) -> Home {
        let dir = tempfile::tempdir().expect("temp dir");
        let controller = Controller::start_with(&dir.path().join("controller"), controller_args);
        let admin = Cli::new(dir.path());
        let login = admin.login(&controller, &controller.first_token());
        assert!(
            login.ok,
            "haven login failed:\n{}\n{}",
            login.stdout, login.stderr
        );
        admin.ok(&["home", "add", "Oak House"]);
        let child = admin.json(&[
            "child",
            "add",
            "--home",
            "Oak House",
            "--name",
            "Amira Khan",
            "--dob",
            "2012-05-17",
        ]);
        let manager_token = admin.json(&[
            "staff",
            "add",
            "--name",
            "Rita Manager",
            "--role",
            "manager",
            "--home",
            "Oak House",
        ])["token"]
            .as_str()
            .unwrap()
            .to_string();
        let manager = admin.as_token(&manager_token);
        Home {
            controller,
            manager,
            admin,
            child_id: child["id"].as_str().unwrap().to_string(),
            dir,
            database: None,
        }
    }

    /// Adds a member of care staff who works at Oak House and returns their command line.
    pub fn care_staff(&self, name: &str) -> Cli {
        let token = self.admin.json(&[
            "staff",
            "add",
            "--name",
            name,
            "--role",
            "staff",
            "--home",
            "Oak House",
        ])["token"]
            .as_str()
            .expect("a new staff member's token")
            .to_string();
        self.admin.as_token(&token)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn enrollment_code(&self) -> String {
        self.admin.json(&["device", "enroll", &self.child_id])["code"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Enrolls a new agent for the child (not yet running).
    pub fn enrolled_agent(&self, name: &str) -> Agent {
        let agent = Agent::new(&self.path(name));
        let code = self.enrollment_code();
        let r = agent.enroll(&self.controller, &code);
        assert!(r.ok, "enroll failed:\n{}\n{}", r.stdout, r.stderr);
        agent
    }

    pub fn devices(&self) -> Vec<Value> {
        self.admin
            .json(&["device", "list", "--all"])
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn device(&self, id: &str) -> Value {
        self.admin.json(&["device", "show", id])
    }

    /// Adds a protected contact (a manager's change that affects every device in the home)
    /// and returns the new policy version the devices should reach.
    pub fn change_policy(&self, name: &str, number: &str) -> u64 {
        self.manager.ok(&[
            "protected-contact",
            "add",
            "--home",
            "Oak House",
            "--name",
            name,
            "--number",
            number,
        ]);
        self.devices()
            .iter()
            .filter(|d| d["status"] == "active")
            .filter_map(|d| d["desired_policy_version"].uint())
            .max()
            .expect("an active device")
    }
}

impl Default for Home {
    fn default() -> Self {
        Self::new()
    }
}

pub use haven_controller::store::testdb::PgSchema;

/// A fresh PostgreSQL schema of its own on the test server (dropped with everything in it
/// when the value is dropped), or `None` after printing `SKIPPED: …` when no PostgreSQL
/// answers at `HAVEN_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`).
pub fn postgres_schema() -> Option<PgSchema> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(PgSchema::create())
}

/// A multi-threaded runtime for tests that speak gRPC directly.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

pub const WAIT: Duration = Duration::from_secs(20);
pub mod modem;
