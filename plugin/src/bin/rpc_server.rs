//! rpc-server: lends this machine's CPU to a WasmEdge host whose plugin spreads a model's
//! layers over RPC servers (`wasmedge --nn-rpc-servers host:port,... `). ggml's RPC server,
//! from the same build as the plugin beside it, so that both speak one protocol version.
//!
//!   rpc-server [--host ADDR] [--port N] [--threads N] [--cache DIR]
//!
//! It has no authentication: anyone who can reach the port can use the machine and read what
//! it holds. Keep it on a private network.

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: rpc-server [--host ADDR] [--port N] [--threads N] [--cache DIR]

  --host ADDR    address to listen on (default 127.0.0.1; 0.0.0.0 for every interface:
                 there is no authentication, so only on a private network)
  --port N       port to listen on (default 50052)
  --threads N    CPU threads for the computations (default: this machine's cores)
  --cache DIR    keep large tensors received in DIR, so that a client loading the same
                 model again sends only their hashes
  --backends DIR where ggml's CPU backends are (default: this program's folder)

WASMEDGE_NN_LOG=info shows which CPU backend was chosen.";

struct Args {
    host: String,
    port: u16,
    threads: usize,
    cache: Option<String>,
    backends: Option<PathBuf>,
}

fn parse() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut args = Args {
        host: "127.0.0.1".into(),
        port: 50052,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cache: None,
        backends: None,
    };
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("host") | Short('H') => args.host = parser.value()?.string()?,
            Long("port") | Short('p') => args.port = parser.value()?.parse()?,
            Long("threads") | Short('t') => args.threads = parser.value()?.parse()?,
            Long("cache") | Short('c') => args.cache = Some(parser.value()?.string()?),
            Long("backends") => args.backends = Some(parser.value()?.into()),
            Long("help") | Short('h') => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    wasmedge_nn_plugin::logging::init();
    let args = match parse() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("rpc-server: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let loopback = args.host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        eprintln!(
            "rpc-server: WARNING: listening on {}:{} without authentication: anyone who reaches this port \
             can use this machine's CPU and memory. Keep it on a private network.",
            args.host, args.port
        );
    }
    let backends = args.backends.or_else(|| std::env::current_exe().ok()?.parent().map(PathBuf::from));
    let Some(backends) = backends else {
        eprintln!("rpc-server: cannot tell this program's folder; give --backends DIR");
        return ExitCode::FAILURE;
    };
    let endpoint = format!("{}:{}", args.host, args.port);
    let served =
        wasmedge_nn_plugin::backend::ggml::rpc::serve(&endpoint, &backends, args.threads, args.cache.as_deref());
    if let Err(e) = served {
        eprintln!("rpc-server: {}", e.message);
    }
    ExitCode::FAILURE
}
