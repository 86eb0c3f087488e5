//! The `otc-device` command. See `otc-device --help`.

fn main() -> std::process::ExitCode {
    otc_device::cli::main()
}
