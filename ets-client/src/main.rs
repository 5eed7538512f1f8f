//! `ets`: the ETS command line. Commands, flags and exit codes: `ets --help`, built from
//! [`cli::Cli`]; each command lives in its own module under `cli/`.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
