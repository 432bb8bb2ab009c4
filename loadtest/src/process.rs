//! Running `ekycd` for benchmarks: a clean environment, the demo
//! registry, a served instance that is always stopped, and its memory as
//! /proc reports it. Shared by the `bench` and `overload` binaries.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

/// A running `ekycd serve`; stopped with SIGTERM and reaped on drop.
pub struct Server {
    child: Child,
    /// Its process id.
    pub pid: u32,
    /// `http://addr`.
    pub endpoint: String,
}

impl Server {
    /// SIGTERM (the graceful shutdown a deployment uses), at most 10 s.
    pub fn stop(mut self) -> Result<()> {
        self.terminate()
    }

    fn terminate(&mut self) -> Result<()> {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return Ok(());
        }
        let ok = Command::new("kill").arg(self.pid.to_string()).status()?;
        ensure!(ok.success(), "kill {} failed", self.pid);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child.kill()?;
        self.child.wait()?;
        bail!("ekycd {} ignored SIGTERM for 10 s; killed", self.pid)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Error paths must not leave a server running.
        if let Err(e) = self.terminate() {
            eprintln!("stopping ekycd: {e:#}");
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `ekycd` with a clean environment (no inherited EKYCD_* variables) on
/// the data dir `dir/data`, with extra variables `env`.
pub fn ekycd(bin: &Path, dir: &Path, env: &[(&'static str, String)]) -> Command {
    let mut cmd = Command::new(bin);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("EKYCD_") {
            cmd.env_remove(name);
        }
    }
    cmd.env("EKYCD_DATA_DIR", dir.join("data"))
        .env("EKYCD_LOG__FILTER", "warn")
        .current_dir(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs `cmd` to completion; its stdout, or its stderr in the error.
pub fn output(mut cmd: Command, what: &str) -> Result<String> {
    let out = cmd.output().with_context(|| format!("cannot run {what}"))?;
    ensure!(
        out.status.success(),
        "{what} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `cmd` to completion like [`output`] and also returns its peak
/// resident memory in KiB: VmHWM, read every `every` while it runs. The
/// last read is at most `every` before it exits (an exited process has no
/// VmHWM), and waiting with `try_wait` in the same loop means the pid is
/// never read after it was reaped and could belong to another process.
pub fn output_with_peak(mut cmd: Command, what: &str, every: Duration) -> Result<(String, i64)> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {what}"))?;
    // Drained on threads of their own, so a chatty child never blocks on a
    // full pipe while this one polls.
    fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    }
    let (stdout, stderr) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let mut peak = 0;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if let Ok(kib) = proc_kib(child.id(), "VmHWM") {
            peak = peak.max(kib);
        }
        std::thread::sleep(every);
    };
    let join = |t: std::thread::JoinHandle<String>| t.join().unwrap_or_default();
    let (stdout, stderr) = (join(stdout), join(stderr));
    ensure!(status.success(), "{what} failed: {status}\n{stderr}");
    Ok((stdout, peak))
}

/// Loads `citizens` synthetic citizens of `seed` into `dir/data` with
/// `ekycd demo`; returns the demo API key.
pub fn prepare(
    bin: &Path,
    dir: &Path,
    env: &[(&'static str, String)],
    citizens: u64,
    seed: u64,
) -> Result<String> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = ekycd(bin, dir, env);
    // The demo tenant is what the tools measure: created without limits, it
    // would get the service's default rate limit (limits.default_*, 20/s)
    // and every run would measure that instead of the service.
    cmd.env("EKYCD_LIMITS__DEFAULT_REQUESTS_PER_SECOND", "0")
        .env("EKYCD_LIMITS__DEFAULT_BURST", "0");
    cmd.args(["demo", "--citizens", &citizens.to_string()])
        .args(["--seed", &seed.to_string(), "--no-serve", "--out"])
        .arg(dir.join("demo"));
    output(cmd, "ekycd demo")?;
    Ok(std::fs::read_to_string(dir.join("demo/api-key"))?
        .trim()
        .to_string())
}

/// Starts `ekycd serve` on `dir/data` with `threads` hashing threads and
/// waits for its address; its stderr goes to `dir/ekycd.stderr`.
pub fn start_server(
    bin: &Path,
    dir: &Path,
    env: &[(&'static str, String)],
    threads: usize,
) -> Result<Server> {
    let stderr = std::fs::File::create(dir.join("ekycd.stderr"))?;
    let mut child = ekycd(bin, dir, env)
        .arg("serve")
        .env("EKYCD_LISTEN", "127.0.0.1:0")
        .env("EKYCD_ARGON2__POOL_THREADS", threads.to_string())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().context("no stdout")?).lines();
    let mut server = Server {
        pid: child.id(),
        child,
        endpoint: String::new(),
    };
    let addr = loop {
        let Some(line) = lines.next() else {
            let log = std::fs::read_to_string(dir.join("ekycd.stderr"))?;
            bail!("ekycd exited before listening:\n{log}");
        };
        if let Some(addr) = line?.strip_prefix("ekycd listening on ") {
            break addr.to_string();
        }
    };
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    server.endpoint = format!("http://{addr}");
    Ok(server)
}

/// A field of /proc/PID/status in KiB (VmRSS: resident now, VmHWM: peak).
pub fn proc_kib(pid: u32, field: &str) -> Result<i64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// VmRSS once startup has settled (unchanged for 250 ms, at most 3 s): the
/// hashing threads fill their Argon2 buffers while the server starts.
pub async fn settled_rss(pid: u32) -> Result<i64> {
    let (mut last, mut stable) = (proc_kib(pid, "VmRSS")?, 0);
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = proc_kib(pid, "VmRSS")?;
        stable = if now == last { stable + 1 } else { 0 };
        last = now;
        if stable == 5 {
            break;
        }
    }
    Ok(last)
}

/// Samples VmRSS every `every` on its own OS thread (so client tasks on
/// the async workers cannot delay the samples) until `stop`; returns the
/// peak and the number of samples.
pub fn sample_rss(
    pid: u32,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(i64, usize)> {
    std::thread::spawn(move || {
        let (mut peak, mut samples) = (0, 0);
        while !stop.load(Ordering::Relaxed) {
            if let Ok(kib) = proc_kib(pid, "VmRSS") {
                (peak, samples) = (peak.max(kib), samples + 1);
            }
            std::thread::sleep(every);
        }
        (peak, samples)
    })
}

/// Where the figures come from: the machine, how busy it already was, and
/// the source revision (`-dirty` with uncommitted changes).
pub fn machine(cores: usize) -> String {
    let read = |path| std::fs::read_to_string(path).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
        .map_or("unknown", |c| c.1.trim());
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = read("/proc/loadavg");
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    let git = Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!(
        "nproc={nproc} (using {cores}), cpu={cpu}, loadavg at start {}, git {git}",
        load.join(" ")
    )
}
