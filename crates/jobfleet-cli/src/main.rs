//! `jobfleet`: the command-line interface (see `jobfleet --help`).

fn main() {
    std::process::exit(jobfleet_cli::run(std::env::args_os().collect()));
}
