//! Helpers for integration tests (here and in the client crate): a real
//! server on `127.0.0.1:0` with its own temporary data directory, a loaded
//! synthetic registry and a verifier key. Not used by the binary.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::import::{ImportReport, ProgressStyle};
use crate::store::Role;
use crate::{App, demo, tenants};

/// How to start a test server.
#[derive(Debug, Clone)]
pub struct TestOptions {
    /// Synthetic citizens to load (seed [`TestOptions::seed`]).
    pub citizens: u64,
    /// Generator seed.
    pub seed: u64,
    /// Argon2 memory cost in KiB (tests use cheap parameters).
    pub memory_kib: u32,
    /// Argon2 passes.
    pub iterations: u32,
    /// Hashing threads.
    pub pool_threads: usize,
    /// Queue capacity of the hashing pool.
    pub queue_capacity: usize,
    /// TLS settings (plaintext by default).
    pub tls: crate::config::TlsConfig,
    /// Limits (in process by default).
    pub limits: ekyc_limits::LimitsConfig,
    /// Store database URL (default: SQLite in the data directory, or a
    /// fresh PostgreSQL database when [`postgres_run`]).
    pub database_url: Option<String>,
    /// Ledger database URL (default: beside the store).
    pub billing_database_url: Option<String>,
    /// Pool and timeouts of the database.
    pub database: crate::config::DatabaseConfig,
    /// How long a request id is answered again identically.
    pub idempotency_window_secs: u64,
    /// Start the server on a manual clock showing this time (Unix ms),
    /// moved with [`TestServer::advance`]; `None` runs on the system clock.
    pub manual_clock_ms: Option<i64>,
    /// Transport limits.
    pub transport: crate::config::TransportConfig,
    /// The invoice issuer's legal particulars (`billing.issuer_*`).
    pub issuer: ekyc_billing::Party,
    /// The pepper version imports derive with (`pepper.version`).
    pub pepper_version: u32,
    /// Other pepper versions held (`pepper.also_held`), their files at the
    /// default place of each version, generated if missing.
    pub also_held_peppers: Vec<u32>,
    /// VerifyBatch bounds.
    pub batch: crate::config::BatchConfig,
}

/// The limits tests start from: production defaults, except that tenants
/// created without limits stay unlimited and admin calls are limited far
/// above what a test sends, so only tests about those limits meet them.
pub fn test_limits() -> ekyc_limits::LimitsConfig {
    ekyc_limits::LimitsConfig {
        default_requests_per_second: 0,
        default_burst: 0,
        admin_requests_per_second: 10_000,
        admin_burst: 10_000,
        ..ekyc_limits::LimitsConfig::default()
    }
}

impl Default for TestOptions {
    fn default() -> Self {
        TestOptions {
            citizens: 50,
            seed: 42,
            memory_kib: 64,
            iterations: 1,
            pool_threads: 2,
            queue_capacity: 64,
            tls: crate::config::TlsConfig::default(),
            limits: test_limits(),
            database_url: None,
            billing_database_url: None,
            database: crate::config::DatabaseConfig::default(),
            idempotency_window_secs: 24 * 3600,
            manual_clock_ms: None,
            transport: crate::config::TransportConfig::default(),
            issuer: ekyc_billing::Party::default(),
            pepper_version: 1,
            also_held_peppers: Vec::new(),
            batch: crate::config::BatchConfig::default(),
        }
    }
}

/// A running server; stops when dropped or on [`TestServer::stop`].
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Shared state, for reading pool counters and the store.
    pub app: Arc<App>,
    /// A verifier key of the test tenant.
    pub api_key: String,
    /// The import that loaded the registry.
    pub import: ImportReport,
    /// The configuration it runs with.
    pub config: Config,
    /// Keeps the data directory alive.
    pub dir: tempfile::TempDir,
    /// The PostgreSQL database of a [`postgres_run`], dropped with this.
    pub database: Option<TestDatabase>,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server with a fresh data directory and registry.
    pub async fn start(mut opts: TestOptions) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let database = if opts.database_url.is_none() && postgres_run() {
            let db = TestDatabase::create().await;
            opts.database_url = Some(db.url.clone());
            Some(db)
        } else {
            None
        };
        let config = test_config(dir.path(), &opts);
        for held in &config.pepper.also_held {
            write_pepper_file(&held.file);
        }
        let mut app = App::open(&config).await.expect("open app");
        if let Some(ms) = opts.manual_clock_ms {
            app.clock = Arc::new(crate::clock::Clock::manual(ms));
        }
        let app = Arc::new(app);
        let (report, rejects) =
            demo::load_synthetic_registry(&app, opts.seed, opts.citizens, ProgressStyle::Quiet)
                .await
                .expect("import");
        assert!(
            rejects.is_empty(),
            "synthetic rows were rejected: {rejects:?}"
        );
        let actor = tenants::Actor::local("test");
        let tenant = tenants::ensure_tenant(&app.store, "test-bank", app.limiter.config(), &actor)
            .await
            .expect("tenant");
        let key = tenants::issue_key(&app.store, &tenant, Role::Verifier, false, None, &actor)
            .await
            .expect("key");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let server_app = Arc::clone(&app);
        let handle = tokio::spawn(async move {
            crate::lifecycle::serve(
                server_app,
                crate::lifecycle::Listeners {
                    grpc: listener,
                    metrics: None,
                    health: None,
                },
                async {
                    let _ = rx.await;
                },
            )
            .await
            .expect("server");
        });
        TestServer {
            addr,
            app,
            api_key: key.token,
            import: report,
            config,
            dir,
            database,
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    /// Creates a tenant with `policy` and returns a verifier key of it.
    pub async fn tenant(&self, name: &str, policy: crate::store::TenantPolicy) -> String {
        create_tenant_with_key(&self.app, name, policy).await
    }

    /// The id of the tenant named `name`.
    pub async fn tenant_id(&self, name: &str) -> String {
        self.app
            .store
            .list_tenants(None, 1000)
            .await
            .expect("tenants")
            .into_iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("no tenant named {name}"))
            .id
    }

    /// Moves the server's manual clock forward (see
    /// [`TestOptions::manual_clock_ms`]).
    pub fn advance(&self, by: std::time::Duration) {
        assert!(
            matches!(*self.app.clock, crate::clock::Clock::Manual(_)),
            "advance needs TestOptions::manual_clock_ms"
        );
        self.app.clock.advance(by);
    }

    /// `http://addr` (`https://addr` with TLS), for clients.
    pub fn endpoint(&self) -> String {
        if self.config.tls.cert_file.is_some() {
            format!("https://{}", self.addr)
        } else {
            format!("http://{}", self.addr)
        }
    }

    /// What an `ekycd` command needs in its environment to act on this
    /// server's state besides its data directory: the database, when it
    /// is not there.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        database_env(&self.database)
    }

    /// Signals shutdown and waits for the server to stop.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.expect("server task");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Creates a tenant with `policy` directly in the store and returns a new
/// verifier key of it.
pub async fn create_tenant_with_key(
    app: &App,
    name: &str,
    policy: crate::store::TenantPolicy,
) -> String {
    let actor = tenants::Actor::local("test");
    let tenant = tenants::new_tenant(name, policy, None, app.limiter.config()).expect("tenant");
    tenants::create_tenant(&app.store, &tenant, &actor)
        .await
        .expect("create tenant");
    tenants::issue_key(&app.store, &tenant, Role::Verifier, false, None, &actor)
        .await
        .expect("key")
        .token
}

/// An `ekycd serve` child process on a prepared data directory, with the
/// test Argon2 parameters of [`test_config`] and a metrics endpoint.
/// Killed when dropped.
pub struct EkycdProcess {
    /// The child.
    pub child: std::process::Child,
    /// `http://addr` of its gRPC port.
    pub endpoint: String,
    /// `addr` of its metrics endpoint.
    pub metrics: String,
    /// `addr` of its health-only listener, when `EKYCD_HEALTH_LISTEN` was
    /// given.
    pub health: Option<String>,
}

impl EkycdProcess {
    /// Starts `binary serve` on `data_dir` with `env` added, and waits for
    /// its address lines.
    pub fn start(binary: &str, data_dir: &std::path::Path, env: &[(&str, &str)]) -> EkycdProcess {
        use std::io::BufRead;
        let mut cmd = std::process::Command::new(binary);
        for (k, _) in std::env::vars() {
            if k.starts_with("EKYCD_") {
                cmd.env_remove(k);
            }
        }
        cmd.arg("serve")
            .env("EKYCD_DATA_DIR", data_dir)
            .env("EKYCD_LISTEN", "127.0.0.1:0")
            .env("EKYCD_METRICS_LISTEN", "127.0.0.1:0")
            .env("EKYCD_ARGON2__PARAMS_ID", "100")
            .env("EKYCD_ARGON2__MEMORY_KIB", "64")
            .env("EKYCD_ARGON2__ITERATIONS", "1")
            .env("EKYCD_ARGON2__QUEUE_CAPACITY", "256")
            .env("EKYCD_LOG__FILTER", "warn");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start ekycd");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = std::io::BufReader::new(stdout).lines();
        let (mut endpoint, mut metrics, mut health) = (None, None, None);
        let wants_health = env.iter().any(|(k, _)| *k == "EKYCD_HEALTH_LISTEN");
        while endpoint.is_none() || metrics.is_none() || (wants_health && health.is_none()) {
            let line = lines.next().expect("ekycd exited early").expect("line");
            if let Some(addr) = line.strip_prefix("ekycd health on ") {
                health = Some(addr.to_string());
            }
            if let Some(addr) = line.strip_prefix("ekycd listening on ") {
                endpoint = Some(format!("http://{addr}"));
            }
            if let Some(url) = line.strip_prefix("ekycd metrics on http://") {
                metrics = Some(url.trim_end_matches("/metrics").to_string());
            }
        }
        EkycdProcess {
            child,
            endpoint: endpoint.unwrap_or_default(),
            metrics: metrics.unwrap_or_default(),
            health,
        }
    }

    /// Asks it to stop with SIGTERM, as Kubernetes does, and waits up to
    /// `within` for it to exit: its exit status, or `None` if it is still
    /// running then.
    pub fn terminate(&mut self, within: std::time::Duration) -> Option<std::process::ExitStatus> {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        let until = std::time::Instant::now() + within;
        while std::time::Instant::now() < until {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        None
    }

    /// Kills it with SIGKILL, as a crash would, and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for EkycdProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What [`prepare_data_dir`] made: a closed service state that `ekycd`
/// processes can serve.
pub struct Prepared {
    /// The configuration it was made with.
    pub config: Config,
    /// One verifier key per tenant asked for, in order.
    pub keys: Vec<String>,
    /// An agency-admin key.
    pub admin_key: String,
    /// The PostgreSQL database of a [`postgres_run`], dropped with this.
    pub database: Option<TestDatabase>,
}

impl Prepared {
    /// What an `ekycd` needs in its environment to serve this state
    /// besides its data directory: the database, when it is not there.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        database_env(&self.database)
    }

    /// Starts `binary serve` (a test's `env!("CARGO_BIN_EXE_ekycd")`) on
    /// `data_dir` and this state, with `env` added.
    pub fn start_ekycd(
        &self,
        binary: &str,
        data_dir: &std::path::Path,
        env: &[(&str, &str)],
    ) -> EkycdProcess {
        let own = self.env();
        let mut all: Vec<(&str, &str)> = own.iter().map(|(k, v)| (*k, v.as_str())).collect();
        all.extend_from_slice(env);
        EkycdProcess::start(binary, data_dir, &all)
    }
}

/// A data directory with a synthetic registry (`citizens` of seed 42) and
/// a tenant per entry of `policies`, plus an agency-admin key; on a
/// [`postgres_run`] the stores are in a fresh PostgreSQL database. All is
/// closed again, so `ekycd` processes can serve it.
pub async fn prepare_data_dir(
    dir: &std::path::Path,
    citizens: u64,
    policies: &[(&str, crate::store::TenantPolicy)],
) -> Prepared {
    let database = if postgres_run() {
        Some(TestDatabase::create().await)
    } else {
        None
    };
    prepare_state(dir, database, citizens, policies).await
}

/// [`prepare_data_dir`] with the stores in `database` (SQLite in `dir`
/// when `None`); the secrets are always files in `dir`.
pub async fn prepare_state(
    dir: &std::path::Path,
    database: Option<TestDatabase>,
    citizens: u64,
    policies: &[(&str, crate::store::TenantPolicy)],
) -> Prepared {
    let opts = TestOptions {
        database_url: database.as_ref().map(|db| db.url.clone()),
        ..TestOptions::default()
    };
    let config = test_config(dir, &opts);
    let app = App::open(&config).await.expect("open");
    demo::load_synthetic_registry(&app, 42, citizens, ProgressStyle::Quiet)
        .await
        .expect("registry");
    let mut keys = Vec::new();
    for (name, policy) in policies {
        keys.push(create_tenant_with_key(&app, name, policy.clone()).await);
    }
    let (_, admin) = tenants::bootstrap(&app.store, app.limiter.config(), false)
        .await
        .expect("bootstrap");
    app.close().await;
    Prepared {
        config,
        keys,
        admin_key: admin.token,
        database,
    }
}

/// A private `redis-server` on a free loopback port, for tests that stop
/// and restart Redis (the shared one on 6379 is never touched). Killed
/// when dropped.
pub struct PrivateRedis {
    /// Its port.
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    /// Starts one and waits until it answers.
    pub fn start() -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut redis = PrivateRedis {
            port,
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
        };
        redis.restart();
        redis
    }

    /// `redis://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it (again) on the same port, with empty state.
    pub fn restart(&mut self) {
        self.kill();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/services.sh installs it)");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "private redis-server did not start on port {}",
                self.port
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A private PostgreSQL server on a free loopback port, for tests that stop
/// and restart the database (the shared one on 5432 is never touched). It
/// runs as the `postgres` user (the server refuses root) from a fresh
/// cluster in a temporary directory, and is killed when dropped.
pub struct PrivatePostgres {
    /// Its port.
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
    bin: std::path::PathBuf,
    uid: u32,
    gid: u32,
}

impl PrivatePostgres {
    /// Creates a cluster (`initdb`, trust authentication) and starts it.
    pub fn start() -> PrivatePostgres {
        use std::os::unix::process::CommandExt;
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries under /usr/lib/postgresql (scripts/services.sh)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("initdb").exists())
            .max()
            .expect("an initdb under /usr/lib/postgresql/*/bin");
        let passwd = std::fs::read_to_string("/etc/passwd").expect("passwd");
        let (uid, gid) = passwd
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.first() == Some(&"postgres")).then(|| (f[2].parse().ok(), f[3].parse().ok()))
            })
            .and_then(|(u, g)| Some((u?, g?)))
            .expect("a postgres user");
        let dir = tempfile::tempdir().expect("temp dir");
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown");
        let data = dir.path().join("data");
        let out = std::process::Command::new(bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .uid(uid)
            .gid(gid)
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut pg = PrivatePostgres {
            port,
            dir,
            child: None,
            bin,
            uid,
            gid,
        };
        pg.restart();
        pg
    }

    /// `postgres://postgres@127.0.0.1:port/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Kills the server at once (SIGKILL to the postmaster; its backends
    /// exit when they see it gone), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Backends close their sockets within moments of the postmaster's
        // death; wait so a restart can bind the port again.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Starts it (again) on the same port and data (after a kill, the
    /// server recovers from its WAL as after a crash).
    pub fn restart(&mut self) {
        use std::os::unix::process::CommandExt;
        self.kill();
        let child = std::process::Command::new(self.bin.join("postgres"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.dir.path().display()
            ))
            .uid(self.uid)
            .gid(self.gid)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start postgres");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let ready = std::process::Command::new(self.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "private postgres did not start on port {}",
                self.port
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A request id never used before in this process: each Verify of a test
/// is a new request unless the test retries on purpose (request ids are
/// idempotency keys).
pub fn unique_request_id(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    format!(
        "{prefix}-{}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// The shared Redis the test environment runs (scripts/services.sh).
pub const SHARED_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// A key prefix no other test run uses, so tests sharing one Redis never
/// see each other's counters. Remove its keys with [`remove_redis_prefix`].
pub fn unique_redis_prefix(test: &str) -> String {
    let nonce: [u8; 8] = crate::secrets::random_bytes().expect("random");
    format!("ekyc-test:{test}:{}:", hex::encode(nonce))
}

/// Deletes every key under `prefix` in the shared Redis.
pub async fn remove_redis_prefix(prefix: &str) {
    let client = redis::Client::open(SHARED_REDIS_URL).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("shared redis must run on 127.0.0.1:6379 (scripts/services.sh)");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .expect("keys");
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut conn)
            .await
            .expect("del");
    }
}

/// A configuration rooted in `dir` with the test's Argon2 settings.
pub fn test_config(dir: &std::path::Path, opts: &TestOptions) -> Config {
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    config.argon2.params_id = 100;
    config.argon2.memory_kib = opts.memory_kib;
    config.argon2.iterations = opts.iterations;
    config.argon2.parallelism = 1;
    config.argon2.pool_threads = opts.pool_threads;
    config.argon2.queue_capacity = opts.queue_capacity;
    config.shutdown_grace_secs = 5;
    config.tls = opts.tls.clone();
    config.limits = opts.limits.clone();
    config.database_url = opts.database_url.clone();
    config.database = opts.database.clone();
    config.billing.database_url = opts.billing_database_url.clone();
    config.billing.idempotency_window_secs = opts.idempotency_window_secs;
    config.transport = opts.transport.clone();
    config.batch = opts.batch.clone();
    config.billing.issuer_legal_name = opts.issuer.legal_name.clone();
    config.billing.issuer_address = opts.issuer.address.clone();
    config.billing.issuer_tax_code = opts.issuer.tax_code.clone();
    config.pepper.version = opts.pepper_version;
    config.pepper.also_held = opts
        .also_held_peppers
        .iter()
        .map(|&version| crate::config::HeldPepper {
            version,
            file: dir.join("keys").join(format!("pepper-v{version}.key")),
        })
        .collect();
    config.validate().expect("valid test config");
    config
}

/// One HTTP/1.1 `GET` on a metrics port (`addr` as `host:port`); the
/// whole response. Blocking: the server closes the connection after one
/// answer.
pub fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: metrics\r\n\r\n").expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    response
}

/// Every value of `citizens` that identifies a person, as tests search
/// files, logs and telemetry for them. Year-only birth dates are skipped:
/// four digits occur by chance in ports and timings.
pub fn personal_values(citizens: &[ekyc_synth::Citizen]) -> Vec<String> {
    let mut needles = Vec::new();
    for c in citizens {
        needles.push(c.id_number.clone());
        needles.push(c.full_name.clone());
        needles.push(c.full_name.to_lowercase());
        needles.push(demo::strip_diacritics(&c.full_name));
        needles.push(c.place_of_residence.clone());
        if c.date_of_birth.len() >= 7 {
            needles.push(c.date_of_birth.clone());
        }
        if !c.phone_number.is_empty() {
            needles.push(c.phone_number.clone());
        }
    }
    needles
}

/// Writes a random pepper to `path` unless one is there (held peppers are
/// never generated by the service itself).
pub fn write_pepper_file(path: &std::path::Path) {
    if path.exists() {
        return;
    }
    std::fs::create_dir_all(path.parent().expect("a directory")).expect("keys directory");
    let bytes = crate::secrets::random_bytes::<32>().expect("random");
    std::fs::write(path, hex::encode(bytes)).expect("write pepper");
}

/// The `ErrorInfo` reason of a refusal (empty when it carries none): what
/// tests compare, beside the code.
pub fn reason(s: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    s.get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
}

/// The PostgreSQL server tests create their databases on.
pub const SHARED_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Whether this run puts every store on PostgreSQL: set
/// `EKYC_TEST_DATABASE=postgres` (`scripts/test.sh` runs the service
/// tests once each way).
pub fn postgres_run() -> bool {
    std::env::var("EKYC_TEST_DATABASE").is_ok_and(|v| v == "postgres")
}

/// A database of its own on the shared PostgreSQL server, created for one
/// test and dropped when this is dropped (also when the test panics).
/// Databases left by a killed run are dropped by the next run that starts
/// one: their names carry the creating process's id.
pub struct TestDatabase {
    /// `postgres://.../<name>`.
    pub url: String,
    name: String,
}

const TEST_DATABASE_PREFIX: &str = "ekyc_t_";

impl TestDatabase {
    /// Creates an empty database.
    pub async fn create() -> TestDatabase {
        use sqlx::Connection;
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let base = std::env::var("EKYC_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| SHARED_POSTGRES_URL.to_string());
        let mut admin = sqlx::PgConnection::connect(&base)
            .await
            .unwrap_or_else(|e| panic!("connect to {base} (scripts/services.sh starts it): {e}"));
        drop_abandoned(&mut admin).await;
        let name = format!(
            "{TEST_DATABASE_PREFIX}{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create test database");
        let _ = admin.close().await;
        // The base URL names a database (`.../test`); ours replaces it.
        let (server, _) = base
            .rsplit_once('/')
            .expect("EKYC_TEST_POSTGRES_URL names a database");
        let url = format!("{server}/{name}");
        TestDatabase { url, name }
    }
}

fn database_env(database: &Option<TestDatabase>) -> Vec<(&'static str, String)> {
    match database {
        Some(db) => vec![("EKYCD_DATABASE_URL", db.url.clone())],
        None => Vec::new(),
    }
}

/// Drops test databases whose creating process is gone.
async fn drop_abandoned(admin: &mut sqlx::PgConnection) {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'ekyc\\_t\\_%'")
            .fetch_all(&mut *admin)
            .await
            .unwrap_or_default();
    for name in names {
        let pid = name
            .strip_prefix(TEST_DATABASE_PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = pid
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut *admin)
            .await;
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot block on a
        // future: a thread with its own small runtime does the work.
        let name = self.name.clone();
        let base = std::env::var("EKYC_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| SHARED_POSTGRES_URL.to_string());
        let _ = std::thread::spawn(move || {
            use sqlx::Connection;
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(mut admin) = sqlx::PgConnection::connect(&base).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}
