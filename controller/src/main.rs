//! The `haven` binary: the controller (`haven serve`) and the staff commands.

fn main() -> std::process::ExitCode {
    haven_controller::cli::main()
}
