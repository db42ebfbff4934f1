//! The nfm-agent binary: parse config, check privileges, load and attach, drop capabilities, run
//! the loop until SIGINT/SIGTERM. Any setup failure is one line on stderr and exit code 1.
use clap::Parser;
use nfm_agent::agent::Agent;
use nfm_agent::config::{Cli, Config};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

fn main() {
    let cli = Cli::parse();
    let cfg = match Config::from_cli(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("nfm-agent: {e:#}");
            std::process::exit(2);
        }
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(&cfg.log_level))
        .target(env_logger::Target::Stderr)
        .init();
    if let Err(e) = run(cfg) {
        eprintln!("nfm-agent: {e:#}");
        std::process::exit(1);
    }
}

/// Set by SIGINT/SIGTERM; the waker, once the agent has one, wakes its loop to stop.
static STOP: AtomicBool = AtomicBool::new(false);
static WAKER: OnceLock<Arc<mio::Waker>> = OnceLock::new();

fn run(cfg: Config) -> anyhow::Result<()> {
    // The handler goes in before anything is attached: a signal that arrives while the agent
    // starts (loading, attaching, asking the metadata service) stops it cleanly once its loop
    // exists, instead of killing it with the program still attached.
    ctrlc::set_handler(|| {
        STOP.store(true, Ordering::SeqCst);
        if let Some(w) = WAKER.get() {
            let _ = w.wake();
        }
    })?;
    let (agent, waker) = Agent::new(cfg)?;
    let _ = WAKER.set(waker.clone());
    if STOP.load(Ordering::SeqCst) {
        let _ = waker.wake();
    }
    match nfm_agent::sys::drop_capabilities() {
        Ok(kept) => log::info!("dropped capabilities (kept: {kept})"),
        Err(e) => log::warn!("could not drop capabilities: {e}"),
    }
    agent.run()
}
