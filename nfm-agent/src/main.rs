//! The nfm-agent binary: parse config, check privileges, load and attach, drop capabilities, run
//! the loop until SIGINT/SIGTERM. Any setup failure is one line on stderr and exit code 1.
use clap::Parser;
use nfm_agent::agent::Agent;
use nfm_agent::config::{Cli, Config};

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

fn run(cfg: Config) -> anyhow::Result<()> {
    let (agent, waker) = Agent::new(cfg)?;
    match nfm_agent::sys::drop_capabilities() {
        Ok(kept) => log::info!("dropped capabilities (kept: {kept})"),
        Err(e) => log::warn!("could not drop capabilities: {e}"),
    }
    ctrlc::set_handler(move || {
        let _ = waker.wake();
    })?;
    agent.run()
}
