fn main() -> std::process::ExitCode {
    sabot_host::cli::main()
}
