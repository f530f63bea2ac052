//! Records the git commit the binary is built from (`hardened_csi_operator_build_info{revision}`):
//! `REVISION` when the build sets it (the Dockerfile's build argument, a checkout without .git),
//! else `git rev-parse HEAD`, else `unknown`.
//!
//! Linked by lld (glibc builds, and the static musl image), the binary also gets packed relative
//! relocations ([`lld_args`]).

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

    for arg in lld_args() {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
}

/// How link arguments reach lld.
#[derive(Clone, Copy)]
enum Lld {
    /// Through the C compiler driver, as `-Wl,...`: glibc builds, which rustc links with cc
    /// driving rust-lld.
    ThroughCc,
    /// Directly: `-C linker-flavor=ld.lld` (the static musl build of the image, linked by
    /// rust-lld).
    Direct,
}

/// The flavor of this build's link, None for a linker that is not lld (such as `zig cc`, which
/// refuses these options).
fn lld() -> Option<Lld> {
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if flags.split('\x1f').any(|f| f.trim_start_matches("-C") == "linker-flavor=ld.lld") {
        return Some(Lld::Direct);
    }
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    (var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu").then_some(Lld::ThroughCc)
}

/// The link arguments for lld: packed relative relocations. A position-independent binary is
/// relocated at start: 80,000 RELA entries (24 bytes each, 1.9 MiB that the loader reads and so
/// keeps resident). DT_RELR packs them into bitmaps of a few KiB (glibc >= 2.36 and musl >= 1.2.4
/// read them).
fn lld_args() -> Vec<String> {
    match lld() {
        Some(Lld::Direct) => vec!["-z".to_string(), "pack-relative-relocs".to_string()],
        Some(Lld::ThroughCc) => vec!["-Wl,-z,pack-relative-relocs".to_string()],
        None => Vec::new(),
    }
}
