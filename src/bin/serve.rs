//! Local mode: `make serve`. Every route from one process; `serve keepalive` runs one keep-alive
//! pass and exits. See [`token_broker::serve::local`].

fn main() -> std::process::ExitCode {
    token_broker::serve::local::main()
}
