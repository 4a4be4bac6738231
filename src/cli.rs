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
    /// The response cache of a running tollgate (through its admin listener)
    Cache {
        #[command(subcommand)]
        action: CacheAction,
    },
}

#[derive(Subcommand, Debug)]
enum CacheAction {
    /// Delete every cached answer, or one cache key's (`--key`)
    Clear {
        /// The cache key (namespace, `x-bf-cache-key`) whose entries to delete
        #[arg(long)]
        key: Option<String>,
    },
}

/// Parse the command line into Pingora's options; `check` (and `--help`,
/// `--version`) are answered here and end the process.
pub fn parse() -> Opt {
    let cli = Cli::parse();
    let opt = Opt { upgrade: cli.upgrade, daemon: cli.daemon, nocapture: cli.nocapture, test: cli.test, conf: cli.conf };
    match cli.command {
        Some(Command::Check) => std::process::exit(check(&opt)),
        Some(Command::Cache { action: CacheAction::Clear { key } }) => std::process::exit(cache_clear(&opt, key.as_deref())),
        None => {}
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

/// `tollgate cache clear [--key K]`: `DELETE /admin/cache[?key=K]` on the
/// admin listener of the configuration's running tollgate (with the admin
/// token when one is set). Exit status 0 when it answered 200.
fn cache_clear(opt: &Opt, key: Option<&str>) -> i32 {
    use std::io::{Read, Write};
    let Some(path) = opt.conf.as_deref() else {
        eprintln!("tollgate cache clear: no configuration file given; run `tollgate cache clear -c FILE`");
        return 2;
    };
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tollgate: invalid configuration: {e}");
            return 1;
        }
    };
    let Some(addr) = config.admin.listen else {
        eprintln!("tollgate cache clear: {path} has no admin listener (admin_listen or metrics_listen)");
        return 1;
    };
    let target = match key {
        Some(k) => format!("/admin/cache?key={}", k.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect::<String>()),
        None => "/admin/cache".to_string(),
    };
    let auth = config.admin.token.as_ref().map(|t| format!("authorization: Bearer {t}\r\n")).unwrap_or_default();
    let answer = (|| -> std::io::Result<String> {
        let mut s = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5))?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
        write!(s, "DELETE {target} HTTP/1.1\r\nhost: {addr}\r\n{auth}content-length: 0\r\nconnection: close\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })();
    match answer {
        Ok(a) => {
            let ok = a.starts_with("HTTP/1.1 200");
            let body = a.split_once("\r\n\r\n").map_or("", |(_, b)| b);
            if ok {
                println!("{body}");
                0
            } else {
                eprintln!("tollgate cache clear: {addr} answered: {}", a.lines().next().unwrap_or(""));
                eprintln!("{body}");
                1
            }
        }
        Err(e) => {
            eprintln!("tollgate cache clear: cannot reach the admin listener {addr}: {e}");
            1
        }
    }
}
