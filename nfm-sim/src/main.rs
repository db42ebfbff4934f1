//! nfm-sim: skeleton only; its own issue builds it. It does nothing yet and says so.
fn main() {
    eprintln!("nfm-sim: not implemented yet");
    std::process::exit(2);
}
