//! nfm-collector: skeleton only; its own issue builds it. It does nothing yet and says so.
fn main() {
    eprintln!("nfm-collector: not implemented yet");
    std::process::exit(2);
}
