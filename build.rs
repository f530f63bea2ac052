//! Records the git commit the binary is built from (`hardened_csi_operator_build_info{revision}`):
//! `REVISION` when the build sets it (the Dockerfile's build argument, a checkout without .git),
//! else `git rev-parse HEAD`, else `unknown`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string()).filter(|s| !s.is_empty())
}

fn main() {
    println!("cargo:rerun-if-env-changed=REVISION");
    let revision = std::env::var("REVISION").ok().filter(|r| !r.is_empty()).or_else(|| git(&["rev-parse", "HEAD"]));
    // Rebuild when HEAD moves (a commit, a checkout); works in worktrees too.
    for path in
        [git(&["rev-parse", "--git-path", "HEAD"]), git(&["rev-parse", "--git-path", "index"])].into_iter().flatten()
    {
        println!("cargo:rerun-if-changed={path}");
    }
    println!("cargo:rustc-env=HCO_GIT_REVISION={}", revision.unwrap_or_else(|| "unknown".to_string()));
}
