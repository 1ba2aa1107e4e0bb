//! The `tern` command.

// jemalloc rather than the system allocator: less CPU per delivery and less memory per idle
// connection on this broker's allocation pattern (docs/PERFORMANCE.md, "Allocator").
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    tern::cli::main()
}
