//! Records the git commit the binary is built from (`hardened_csi_operator_build_info{revision}`):
//! `REVISION` when the build sets it (the Dockerfile's build argument, a checkout without .git),
//! else `git rev-parse HEAD`, else `unknown`.
//!
//! On glibc it also links the binary with packed relative relocations (DT_RELR).

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

    // A position-independent binary is relocated at start: 80,000 RELA entries (24 bytes each,
    // 1.9 MiB that the loader reads and so keeps resident). DT_RELR packs them into bitmaps of
    // a few KiB (lld, the toolchain's linker; glibc >= 2.36 reads them). The musl image is linked
    // by zig, whose `zig cc` does not pass this option on, so it is asked for on glibc only.
    if std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu")
        && std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
    {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
