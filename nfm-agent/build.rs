//! Builds the sock_ops program (`nfm-agent-ebpf`, binary `nfm`) with aya-build, as in
//! aya-template: `rustup run nightly cargo build --target bpfel-unknown-none -Z build-std=core`.
//! The object lands in `$OUT_DIR/nfm` and is embedded with `include_bytes_aligned!`.
use anyhow::{anyhow, Context as _};

fn main() -> anyhow::Result<()> {
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("MetadataCommand::exec")?;
    let ebpf = packages
        .into_iter()
        .find(|p| p.name.as_str() == "nfm-agent-ebpf")
        .ok_or_else(|| anyhow!("nfm-agent-ebpf package not found"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("nfm-agent-ebpf manifest has no parent"))?;
    // The shared crate is compiled into the object too: rebuild when it changes.
    println!("cargo:rerun-if-changed={}", root_dir.join("common"));
    aya_build::build_ebpf(
        [aya_build::Package {
            name: ebpf.name.as_str(),
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
