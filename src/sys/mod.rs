//! Thin safe wrappers over the operating system: clock reads and CPU facts. With `io/`, the only
//! home of `unsafe` in the crate; every block carries a `// SAFETY:` comment.

pub mod clock;
pub mod mem;
#[cfg(unix)]
pub mod peercred;
pub mod random;
pub mod timex;
