//! The `local-apiserver` binary as a process and the real kubectl against it, shared by the
//! kubectl test targets (`kubectl.rs`, `kubectl_rbac.rs`). Requires `kubectl` on PATH
//! (preinstalled on the project's machines).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `local-apiserver` process and the kubeconfig it wrote; stopped (SIGTERM, then
/// kill) and cleaned up on drop, even when an assertion fails.
pub struct Server {
    child: Child,
    pub kubeconfig: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM is the documented way to stop it; kill() is the fallback.
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let exited = (0..50).any(|_| {
            let done = matches!(self.child.try_wait(), Ok(Some(_)));
            if !done {
                std::thread::sleep(Duration::from_millis(20));
            }
            done
        });
        if !exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.kubeconfig);
        let _ = std::fs::remove_file(self.kubeconfig.with_extension("manifest.yaml"));
        let _ = std::fs::remove_dir_all(self.kubeconfig.with_extension("cache"));
    }
}

/// Starts the binary with `extra` flags and waits for its readiness line: `http://` by
/// default, `https://` with `--authorization-mode=RBAC` (client-go sends credentials to https
/// servers only). The kubeconfig it writes names the URL it announced.
pub fn start(name: &str, extra: &[&str]) -> Server {
    let kubeconfig = std::env::temp_dir().join(format!("local-apiserver-{name}-{}.yaml", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_local-apiserver"))
        .args(["--port", "0", "--kubeconfig"])
        .arg(&kubeconfig)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("local-apiserver binary starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("readiness line");
    let srv = Server { child, kubeconfig };
    let scheme = if extra.contains(&"--authorization-mode=RBAC") { "https" } else { "http" };
    assert!(line.starts_with(&format!("local-apiserver listening on {scheme}://127.0.0.1:")), "{line}");
    let url = line.trim().rsplit(' ').next().unwrap_or_default().to_string();
    let kc = std::fs::read_to_string(&srv.kubeconfig).expect("kubeconfig written");
    assert!(kc.contains(&format!("server: {url}")), "{kc}");
    srv
}

/// One kubectl run against the kubeconfig `kc` (with its own discovery cache).
pub struct Run {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(kc: &Path, args: &[&str]) -> Run {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kc)
        .arg("--cache-dir")
        .arg(kc.with_extension("cache"))
        .args(args)
        .output()
        .expect("kubectl is installed and on PATH");
    Run {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
