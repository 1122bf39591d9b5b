//! Which `rpc-server` workers the host lends its models to: `--nn-rpc-servers host:port,...`
//! on the `wasmedge` command line, or `WASMEDGE_NN_RPC_SERVERS` for embedders. Only the host
//! sets it; a guest cannot name an address. (What a backend does with it is its own affair:
//! the GGML backend spreads layers over them, backend/ggml/rpc.rs.)

use once_cell::sync::OnceCell;

/// The variable embedders set (the command-line option wins).
pub const ENV: &str = "WASMEDGE_NN_RPC_SERVERS";

static SERVERS: OnceCell<Vec<String>> = OnceCell::new();

/// Set from the command line's value (WasmEdge calls this when it makes the module); without
/// one, from the environment.
pub fn configure(given: Option<String>) {
    SERVERS.get_or_init(|| resolve(given));
}

/// The endpoints, in the order given (empty: models stay on this machine).
pub fn list() -> &'static [String] {
    SERVERS.get_or_init(|| resolve(None))
}

fn resolve(given: Option<String>) -> Vec<String> {
    let text = given.filter(|g| !g.trim().is_empty()).or_else(|| std::env::var(ENV).ok()).unwrap_or_default();
    let list = parse(&text);
    match &list {
        Ok(list) if !list.is_empty() => log::info!("rpc servers: {}", list.join(", ")),
        Ok(_) => {}
        Err(e) => log::error!("{e}; models stay on this machine"),
    }
    list.unwrap_or_default()
}

/// `host:port,host:port`: each with a port, none twice.
pub fn parse(text: &str) -> Result<Vec<String>, String> {
    let mut list: Vec<String> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let port = item.rsplit_once(':').map(|(host, port)| (host, port.parse::<u16>()));
        match port {
            Some((host, Ok(port))) if !host.is_empty() && port > 0 => {}
            _ => return Err(format!("--nn-rpc-servers: '{item}' is not host:port (for example 192.168.1.20:50052)")),
        }
        if list.iter().any(|l| l == item) {
            return Err(format!("--nn-rpc-servers: '{item}' is named twice"));
        }
        list.push(item.to_string());
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn endpoints_are_host_and_port() {
        assert_eq!(parse("").unwrap(), Vec::<String>::new());
        assert_eq!(parse("127.0.0.1:50052, 10.0.0.2:1").unwrap(), ["127.0.0.1:50052", "10.0.0.2:1"]);
        for bad in ["127.0.0.1", ":5", "h:0", "h:70000", "h:x", "a:1,a:1"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
