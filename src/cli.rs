//! The command line. Pingora's own flags keep their meaning (`-c`, `-d`,
//! `-u`, `-t`: the process is still started and upgraded the same way) with
//! tollgate's help text, plus `--version` (with the git revision) and
//! `check`, which prints what a configuration would serve.

use clap::{Parser, Subcommand};
use pingora::server::configuration::{Opt, ServerConf};
use tollgate::config::Config;

const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (git ", env!("TOLLGATE_GIT_REV"), ")");

const ABOUT: &str = "tollgate: an edge gateway for LLM provider APIs (OpenAI, Anthropic, Azure OpenAI, Gemini, Vertex AI, Ollama, OpenAI-compatible)";

const LONG_ABOUT: &str = "tollgate: an edge gateway for LLM provider APIs, built on Pingora.

Applications point their unmodified provider SDKs at it: it forwards
provider-native requests (/openai_passthrough, /anthropic_passthrough,
/azure_passthrough, /genai_passthrough) and offers one OpenAI-shaped API over
every provider (/openai). It swaps the client's placeholder credential for a
key or cloud identity only the gateway holds, streams both bodies, enforces
virtual keys, limits and budgets, and records every request (JSON access log,
Prometheus metrics, token usage and cost).";

const AFTER_HELP: &str = "Examples:
  tollgate -c /etc/tollgate/tollgate.yaml          run in the foreground
  tollgate check -c /etc/tollgate/tollgate.yaml    validate, print what would be served
  tollgate -t -c /etc/tollgate/tollgate.yaml       validate only (exit status)

Signals: SIGHUP reloads keys, virtual keys, prices and limits; SIGTERM drains
and stops; a new process started with -u takes the sockets over when the old
one gets SIGQUIT (zero-downtime upgrade).";

#[derive(Parser, Debug)]
#[command(name = "tollgate", version = VERSION, about = ABOUT, long_about = LONG_ABOUT, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The configuration file: Pingora's settings at the top level, the gateway's under `tollgate:`
    #[arg(short, long, value_name = "FILE", global = true)]
    conf: Option<String>,
    /// Run in the background (the pid goes to `pid_file`, logs to `error_log`)
    #[arg(short, long)]
    daemon: bool,
    /// Take the listening sockets over from a running tollgate (zero-downtime upgrade; then send the old process SIGQUIT)
    #[arg(short, long)]
    upgrade: bool,
    /// Check the configuration and exit: status 0 when it is valid, 1 with the error otherwise
    #[arg(short, long)]
    test: bool,
    /// Ignored (accepted for `cargo test` harnesses, as Pingora does)
    #[arg(long, hide = true)]
    nocapture: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate the configuration and print what it would serve: listeners, routes, providers with their key names (never values), virtual key names, store
    Check,
}

/// Parse the command line into Pingora's options; `check` (and `--help`,
/// `--version`) are answered here and end the process.
pub fn parse() -> Opt {
    let cli = Cli::parse();
    let opt = Opt { upgrade: cli.upgrade, daemon: cli.daemon, nocapture: cli.nocapture, test: cli.test, conf: cli.conf };
    if let Some(Command::Check) = cli.command {
        std::process::exit(check(&opt));
    }
    opt
}

/// `tollgate check`: both sections validated as at start; the summary on
/// stdout. The exit status: 0 valid, 1 invalid, 2 no file given.
fn check(opt: &Opt) -> i32 {
    let Some(path) = opt.conf.as_deref() else {
        eprintln!("tollgate check: no configuration file given; run `tollgate check -c FILE`");
        return 2;
    };
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tollgate: invalid configuration: {e}");
            return 1;
        }
    };
    let server = match ServerConf::load_yaml_with_opt_override(opt) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tollgate: invalid configuration: {path}: {e}");
            return 1;
        }
    };
    print!("{}", config.summary());
    println!(
        "server:        {} threads, pid file {}, upgrade socket {}, grace period {}s",
        server.threads,
        server.pid_file,
        server.upgrade_sock,
        server.grace_period_seconds.unwrap_or(0)
    );
    println!("configuration OK");
    0
}
