//! The `ofmon` binary: a thin command line over the library crates.
fn main() {
    println!("ofmon");
}
