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
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server with a fresh data directory and registry.
    pub async fn start(opts: TestOptions) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = test_config(dir.path(), &opts);
        let app = Arc::new(App::open(&config).await.expect("open app"));
        let (report, rejects) =
            demo::load_synthetic_registry(&app, opts.seed, opts.citizens, ProgressStyle::Quiet)
                .await
                .expect("import");
        assert!(
            rejects.is_empty(),
            "synthetic rows were rejected: {rejects:?}"
        );
        let actor = tenants::Actor::local("test");
        let tenant = tenants::ensure_tenant(&app.store, "test-bank", &actor)
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
            crate::grpc::run(listener, server_app, async {
                let _ = rx.await;
            })
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
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    /// `http://addr` (`https://addr` with TLS), for clients.
    pub fn endpoint(&self) -> String {
        if self.config.tls.cert_file.is_some() {
            format!("https://{}", self.addr)
        } else {
            format!("http://{}", self.addr)
        }
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
    config.validate().expect("valid test config");
    config
}
