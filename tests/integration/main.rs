//! The one integration test binary (ripgrep's habit: one binary, many
//! modules). Each module says what it exercises.

mod profile_bad;
mod profile_cli;
mod profile_rules;
mod profile_support;
mod render_golden;
mod render_oracles;
