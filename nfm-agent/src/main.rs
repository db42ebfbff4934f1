//! nfm-agent: skeleton only; its own issue builds it. It does nothing yet and says so.
fn main() {
    eprintln!("nfm-agent: not implemented yet");
    std::process::exit(2);
}
