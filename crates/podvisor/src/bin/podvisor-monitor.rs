//! The container monitor as a program of its own (`podvisor monitor` is the same): see
//! `podvisor_runtime::monitor`.

fn main() {
    std::process::exit(podvisor_runtime::monitor::main(std::env::args_os().skip(1).collect()));
}
